import { Inject, Injectable } from '@nestjs/common';
import { AlertsService } from '@coffer/alerts';
import { audit } from '@coffer/audit';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { AppError } from '@coffer/http';
import { JobsService } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { AcmeRepository } from './acme.repository';
import { certificateNames, inspectPair, nextRenewalAttempt, renewalAlert, renewalDue } from './certificate';
import { CertificatesRepository, certificateId, StoredCertificate } from './certificates.repository';
import { ClockRepository } from './clock.repository';
import { OrderLock } from './order-lock';

export const RENEWAL_FAILING_ALERT = 'CertificateRenewalFailing';
/** An order takes seconds; the lock outlives a stuck one by far but not a restart loop. */
const ORDER_LOCK_MS = 10 * 60_000;
const ERROR_MAX_CHARS = 500;

export type RenewalOutcome = 'issued' | 'renewed' | 'failed' | 'not_due' | 'locked' | 'unknown';

/**
 * ACME certificates kept in the control-plane database and renewed by the worker (ADR 0002, 0005).
 * The schedule registers the configured certificate and enqueues a job for each one due; the
 * job orders under the installation's order lock, stores the result (or the failure and the
 * next attempt), audits it, and raises or resolves the renewal alert. API replicas pick the new
 * certificate up from the database (StoredAcmeSource).
 */
@Injectable()
export class CertificateRenewalService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly certificates: CertificatesRepository,
    private readonly acme: AcmeRepository,
    private readonly lock: OrderLock,
    private readonly alerts: AlertsService,
    private readonly clock: ClockRepository,
    private readonly jobs: JobsService,
  ) {}

  /** The ACME certificate of this configuration, if TLS_MODE=acme. */
  configuredId(): string | undefined {
    return this.config.TLS_MODE === 'acme' ? certificateId('acme', certificateNames(this.config.TLS_DOMAINS, false)) : undefined;
  }

  /** The schedule tick: registers the configured certificate, enqueues one job per due one. */
  async enqueueDue(): Promise<string[]> {
    const now = this.clock.now();
    const id = this.configuredId();
    if (id) await this.certificates.ensure(id, 'acme', certificateNames(this.config.TLS_DOMAINS, false), now);
    const due = await this.certificates.due(now);
    for (const certificateId of due) await this.jobs.enqueue('renew-certificate', { certificateId });
    return due;
  }

  /** What an operator sees of each certificate in service (never the key). */
  async list() {
    return (await this.certificates.list()).map((c) => ({
      id: c.id,
      domains: c.domains,
      source: c.source,
      issuer: c.issuer,
      serial: c.serial,
      notBefore: c.notBefore?.toISOString() ?? null,
      notAfter: c.notAfter?.toISOString() ?? null,
      nextRenewalAt: new Date(Math.max(c.renewAfter.getTime(), c.nextAttemptAt?.getTime() ?? 0)).toISOString(),
      lastAttemptAt: c.lastAttemptAt?.toISOString() ?? null,
      lastError: c.lastError,
      failures: c.failures,
    }));
  }

  /** An operator's forced renewal (REST and CLI): the same job, whatever the due date. */
  async requestRenewal(id: string): Promise<{ jobId: string }> {
    const certificate = await this.certificates.get(id);
    if (!certificate || certificate.source !== 'acme') throw new AppError('certificate_not_found', `no ACME certificate ${id}`);
    return { jobId: await this.jobs.enqueue('renew-certificate', { certificateId: id, force: true }) };
  }

  /** The job: orders if due (or forced), under the order lock. Failures are recorded, not thrown. */
  async renew(id: string, force = false): Promise<RenewalOutcome> {
    const before = await this.certificates.get(id);
    if (!before || before.source !== 'acme') return 'unknown';
    if (!force && !isDue(before, this.clock.now())) return 'not_due';
    let outcome: RenewalOutcome = 'locked';
    await this.lock.run('acme-order', ORDER_LOCK_MS, async () => {
      // Re-read under the lock: the holder before us may just have renewed it.
      const current = (await this.certificates.get(id))!;
      outcome = force || isDue(current, this.clock.now()) ? await this.order(current) : 'not_due';
    });
    return outcome;
  }

  private async order(certificate: StoredCertificate): Promise<RenewalOutcome> {
    const { id, domains } = certificate;
    const previous = served(certificate);
    try {
      const pair = await this.acme.order(domains);
      const info = inspectPair(pair);
      const now = this.clock.now();
      await this.certificates.saveIssued(id, pair, info, renewalDue(info), now);
      const action = previous ? 'certificate.renewed' : 'certificate.issued';
      audit({ action, target: { id }, domains, serial: info.serial, notAfter: info.notAfter.toISOString(),
        previousSerial: certificate.serial });
      this.logger.info({ certificate: id, domains, serial: info.serial, notAfter: info.notAfter.toISOString() }, previous ? 'certificate renewed by ACME' : 'certificate issued by ACME');
      if (await this.alerts.resolve(failingAlert(certificate), now)) {
        audit({ action: 'certificate.alert_resolved', target: { id }, alert: RENEWAL_FAILING_ALERT });
      }
      return previous ? 'renewed' : 'issued';
    } catch (error) {
      const now = this.clock.now();
      const message = String((error as Error)?.message ?? error).slice(0, ERROR_MAX_CHARS);
      const failures = certificate.failures + 1;
      const nextAttemptAt = nextRenewalAttempt(previous, failures, now, this.config.TLS_RENEWAL_RETRY_MS);
      await this.certificates.saveFailure(id, { at: now, error: message, failures, nextAttemptAt });
      audit({ action: previous ? 'certificate.renewal_failed' : 'certificate.issue_failed', outcome: 'failure',
        target: { id }, domains, failures, error: message, nextAttemptAt: nextAttemptAt.toISOString() });
      const fields = { certificate: id, domains, failures, notAfter: previous?.notAfter.toISOString(), retryAt: nextAttemptAt.toISOString(), err: { message } };
      const alerting = previous && renewalAlert(previous) <= now;
      if (alerting) {
        this.logger.error(fields, 'certificate renewal failing; the certificate expires soon');
        const started = await this.alerts.fire({
          ...failingAlert(certificate),
          severity: 'critical',
          summary: `TLS certificate renewal for ${domains.join(', ')} is failing; it expires at ${previous.notAfter.toISOString()}`,
          description: `${failures} failed attempts in a row; last error: ${message}; next attempt at ${nextAttemptAt.toISOString()}`,
          startsAt: now,
        });
        if (started) audit({ action: 'certificate.alert_raised', target: { id }, alert: RENEWAL_FAILING_ALERT,
          notAfter: previous.notAfter.toISOString(), failures });
      } else if (previous) {
        this.logger.warn(fields, 'certificate renewal failed; will retry');
      } else {
        this.logger.error(fields, 'ACME order failing; serving the internal CA certificate meanwhile');
      }
      return 'failed';
    }
  }
}

function isDue(certificate: StoredCertificate, now: Date): boolean {
  return certificate.renewAfter <= now && (!certificate.nextAttemptAt || certificate.nextAttemptAt <= now);
}

function served(certificate: StoredCertificate): { notBefore: Date; notAfter: Date } | undefined {
  return certificate.notBefore && certificate.notAfter ? { notBefore: certificate.notBefore, notAfter: certificate.notAfter } : undefined;
}

function failingAlert(certificate: StoredCertificate) {
  return { name: RENEWAL_FAILING_ALERT, labels: { certificate: certificate.id, domains: certificate.domains.join(',') } };
}
