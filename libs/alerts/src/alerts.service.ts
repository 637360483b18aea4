import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { JobsService } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';

/** One condition, named like a Prometheus alert: `CertificateRenewalFailing`. */
export interface Alert {
  name: string;
  /** What distinguishes this instance of the alert (a certificate id, an org): deduplication key. */
  labels: Record<string, string>;
  severity: 'critical' | 'warning' | 'info';
  summary: string;
  description?: string;
  /** When the condition began (the caller's clock). */
  startsAt: Date;
}

/** The Alertmanager webhook body (version 4), so receivers written for Alertmanager work unchanged. */
export interface AlertWebhookBody {
  version: '4';
  groupKey: string;
  status: 'firing' | 'resolved';
  receiver: 'coffer';
  groupLabels: Record<string, string>;
  commonLabels: Record<string, string>;
  commonAnnotations: Record<string, string>;
  externalURL: string;
  alerts: {
    status: 'firing' | 'resolved';
    labels: Record<string, string>;
    annotations: Record<string, string>;
    startsAt: string;
    endsAt: string;
    generatorURL: string;
    fingerprint: string;
  }[];
}

/** Alertmanager's "no end yet". */
const NO_END = '0001-01-01T00:00:00Z';
/** A firing alert is remembered this long without a resolution, then may be sent again. */
const FIRING_TTL_SECONDS = 30 * 86_400;

/**
 * Raises and resolves alerts on the webhooks of ALERT_WEBHOOK_URLS. Each alert instance
 * (name + labels) is sent once when it starts firing and once when it resolves, however many
 * processes or job runs report it: the firing state is kept in Redis, shared by every process.
 * A delivery that reached no webhook forgets the state, so the next report sends it again.
 */
@Injectable()
export class AlertsService {
  private readonly urls: string[];

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly jobs: JobsService,
  ) {
    this.urls = config.ALERT_WEBHOOK_URLS.split(',').map((u) => u.trim()).filter(Boolean);
  }

  /** Returns true when this call started the alert (it was not firing already). */
  async fire(alert: Alert): Promise<boolean> {
    const fingerprint = alertFingerprint(alert);
    const key = this.key(fingerprint);
    const state = JSON.stringify({ ...alert, startsAt: alert.startsAt.toISOString() });
    if ((await this.jobs.redis.set(key, state, 'EX', FIRING_TTL_SECONDS, 'NX')) !== 'OK') return false;
    this.logger.error({ alert: alert.name, labels: alert.labels, fingerprint }, `alert firing: ${alert.summary}`);
    if (!(await this.deliver(webhookBody('firing', alert, fingerprint)))) await this.jobs.redis.del(key);
    return true;
  }

  /** Returns true when the alert was firing and is now resolved. */
  async resolve(alert: Pick<Alert, 'name' | 'labels'>, endsAt: Date): Promise<boolean> {
    const fingerprint = alertFingerprint(alert);
    const key = this.key(fingerprint);
    const state = await this.jobs.redis.getdel(key);
    if (!state) return false;
    const firing = JSON.parse(state) as Alert & { startsAt: string };
    this.logger.info({ alert: alert.name, labels: alert.labels, fingerprint }, 'alert resolved');
    await this.deliver(webhookBody('resolved', { ...firing, startsAt: new Date(firing.startsAt) }, fingerprint, endsAt));
    return true;
  }

  /** POSTs to every webhook; true when at least one accepted it (or none is configured). */
  private async deliver(body: AlertWebhookBody): Promise<boolean> {
    if (!this.urls.length) return true;
    const results = await Promise.all(
      this.urls.map(async (url) => {
        try {
          const response = await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'user-agent': 'coffer-alerts' },
            body: JSON.stringify(body),
            signal: AbortSignal.timeout(this.config.ALERT_WEBHOOK_TIMEOUT_MS),
          });
          await response.body?.cancel();
          if (!response.ok) throw new Error(`status ${response.status}`);
          return true;
        } catch (error) {
          // The URL may carry a token in its path or query: log the origin only.
          this.logger.warn({ webhook: new URL(url).origin, status: body.status, err: { message: (error as Error).message } }, 'alert webhook failed');
          return false;
        }
      }),
    );
    return results.some(Boolean);
  }

  private key(fingerprint: string): string {
    return `${this.config.REDIS_KEY_PREFIX}:alert:${fingerprint}`;
  }
}

/** Stable per alert instance: the name and the labels, sorted. */
export function alertFingerprint(alert: Pick<Alert, 'name' | 'labels'>): string {
  const labels = Object.entries(alert.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash('sha256').update(JSON.stringify([alert.name, labels])).digest('hex').slice(0, 16);
}

export function webhookBody(status: 'firing' | 'resolved', alert: Alert, fingerprint: string, endsAt?: Date): AlertWebhookBody {
  const labels = { alertname: alert.name, severity: alert.severity, ...alert.labels };
  const annotations = { summary: alert.summary, ...(alert.description && { description: alert.description }) };
  return {
    version: '4',
    groupKey: `coffer:${fingerprint}`,
    status,
    receiver: 'coffer',
    groupLabels: { alertname: alert.name },
    commonLabels: labels,
    commonAnnotations: annotations,
    externalURL: '',
    alerts: [
      {
        status,
        labels,
        annotations,
        startsAt: alert.startsAt.toISOString(),
        endsAt: status === 'resolved' && endsAt ? endsAt.toISOString() : NO_END,
        generatorURL: '',
        fingerprint,
      },
    ],
  };
}
