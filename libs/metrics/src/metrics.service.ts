import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { AuditDeliveryService, auditWriteFailures } from '@coffer/audit';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { JobsService, QUEUE_NAMES } from '@coffer/jobs';
import { KeyRotationRepository } from '@coffer/keys';
import { KMS, KmsProvider } from '@coffer/kms';
import { LOGGER, Logger } from '@coffer/logging';
import { SpoolRepository } from '@coffer/spool';
import { CertificatesRepository, servedCertificate, StoredCertificate } from '@coffer/tls';
import { OrgRegistry } from '@coffer/tenancy';
import { PlainListener } from './plain-listener';

/** Per-org figures cost a query per org: a scrape within this long reuses the last ones. */
const PER_ORG_CACHE_MS = 15_000;

/**
 * Prometheus metrics on their own listener (METRICS_HOST:METRICS_PORT, plain HTTP, never
 * published: in deploy/compose it sits on the internal network only), so that scraping needs no
 * API credential and the public port serves no operational detail. Values are read from live
 * state at scrape time; nothing here is a constant.
 */
@Injectable()
export class MetricsService implements OnApplicationBootstrap, OnApplicationShutdown {
  readonly registry = new Registry();
  private readonly listener: PlainListener;
  private perOrg?: { at: number; values: Promise<PerOrg[]> };

  private readonly requestDuration = new Histogram({
    name: 'coffer_http_request_duration_seconds',
    help: 'API request latency by route template and status',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(KMS) private readonly kms: KmsProvider,
    private readonly orgs: OrgRegistry,
    private readonly keys: KeyRotationRepository,
    private readonly delivery: AuditDeliveryService,
    private readonly jobs: JobsService,
    private readonly stored: CertificatesRepository,
    private readonly moduleRef: ModuleRef,
    private readonly spool: SpoolRepository,
  ) {
    this.listener = new PlainListener('metrics', this.logger, {
      '/metrics': async () => ({ status: 200, type: this.registry.contentType, body: await this.registry.metrics() }),
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'coffer_' });
    this.registry.registerMetric(auditWriteFailures);
    const self = this;
    new Gauge({
      name: 'coffer_kms_up',
      help: '1 when the KMS answers and is unsealed, else 0',
      registers: [this.registry],
      async collect() {
        const health = await self.kms.health();
        this.set(health.reachable && !health.sealed ? 1 : 0);
      },
    });
    new Gauge({
      name: 'coffer_tls_certificate_expiry_seconds',
      help: 'Seconds until the served certificate expires',
      registers: [this.registry],
      collect() {
        this.reset();
        const current = servedCertificate(self.moduleRef);
        if (current) this.set((current.notAfter.getTime() - Date.now()) / 1000);
      },
    });
    new Gauge({
      name: 'coffer_queue_jobs',
      help: 'Background jobs by queue and state',
      labelNames: ['queue', 'state'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const queue of QUEUE_NAMES) {
          const counts = await self.jobs.queue(queue).getJobCounts('waiting', 'active', 'delayed', 'failed');
          for (const [state, n] of Object.entries(counts)) this.set({ queue, state }, n);
        }
      },
    });
    /** One series per row of `rows()`, labelled `label`; rows without a value are left out. */
    const gaugePer = <T>(label: string, rows: () => Promise<T[]>, labelOf: (row: T) => string) =>
      (name: string, help: string, value: (row: T) => number | null | undefined) =>
        new Gauge({
          name,
          help,
          labelNames: [label],
          registers: [this.registry],
          async collect() {
            this.reset();
            for (const row of await rows()) {
              const v = value(row);
              if (v !== undefined && v !== null) this.set({ [label]: labelOf(row) }, v);
            }
          },
        });
    const perOrg = gaugePer('org', () => this.perOrgValues(), (o) => o.slug);
    perOrg('coffer_org_key_age_seconds', "Age of the org key's latest version", (o) => o.keyAgeSeconds);
    perOrg('coffer_org_key_rewrap_remaining', 'Stored data keys still wrapped under an older key version', (o) => o.rewrapRemaining);
    perOrg('coffer_audit_delivery_pending_entries', 'Audit entries not yet delivered to the org bucket', (o) => o.deliveryPending);
    perOrg('coffer_audit_delivery_last_success_timestamp_seconds', 'When a batch was last delivered', (o) => o.lastDeliveredAt);
    perOrg('coffer_pending_writes', 'Writes queued in the spool through a KMS outage, not yet flushed', (o) => o.pendingWrites);
    const perCertificate = gaugePer('certificate', () => this.stored.list(), (c: StoredCertificate) => c.id);
    perCertificate('coffer_certificate_expiry_seconds', 'Seconds until each stored (ACME) certificate expires', (c) =>
      c.notAfter ? (c.notAfter.getTime() - Date.now()) / 1000 : undefined,
    );
    perCertificate('coffer_certificate_renewal_failures', 'Consecutive failed renewals of each stored certificate', (c) => c.failures);
  }

  /**
   * Each request's latency under its route template (never the raw URL): at its response, or,
   * for one its client abandoned before the answer (no response), at the abort, as status 499.
   */
  install(fastify: FastifyInstance): void {
    const started = new WeakMap<object, number>();
    const observe = (request: FastifyRequest, status: number, seconds: number) =>
      this.requestDuration.observe({ method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(status) }, seconds);
    fastify.addHook('onRequest', async (request) => void started.set(request, performance.now()));
    fastify.addHook('onResponse', async (request, reply) => observe(request, reply.statusCode, reply.elapsedTime / 1000));
    fastify.addHook('onRequestAbort', async (request) => observe(request, 499, (performance.now() - (started.get(request) ?? performance.now())) / 1000));
  }

  get port(): number | undefined {
    return this.listener.port;
  }

  onApplicationBootstrap(): Promise<void> {
    return this.listener.listen(this.config.METRICS_HOST, this.config.METRICS_PORT);
  }

  onApplicationShutdown(): Promise<void> {
    return this.listener.close();
  }

  private perOrgValues(): Promise<PerOrg[]> {
    if (!this.perOrg || Date.now() - this.perOrg.at > PER_ORG_CACHE_MS) {
      const values = this.collectPerOrg();
      this.perOrg = { at: Date.now(), values };
      values.catch(() => (this.perOrg = undefined));
    }
    return this.perOrg.values;
  }

  private async collectPerOrg(): Promise<PerOrg[]> {
    const result: PerOrg[] = [];
    for (const org of await this.orgs.listActive()) {
      const key = await this.keys.state(org.id);
      const delivery = await this.delivery.progress(org);
      const keyCreatedAt = key?.lastRotatedAt ?? org.provisionedAt;
      result.push({
        slug: org.slug,
        keyAgeSeconds: keyCreatedAt ? (Date.now() - keyCreatedAt.getTime()) / 1000 : undefined,
        // A key never rotated has nothing to rewrap: 0, not a missing series.
        rewrapRemaining: key?.rewrapRemaining ?? 0,
        deliveryPending: delivery?.pendingEntries,
        lastDeliveredAt: delivery?.lastDeliveredAt ? Date.parse(delivery.lastDeliveredAt) / 1000 : undefined,
        pendingWrites: await this.spool.countPending(org),
      });
    }
    return result;
  }
}

interface PerOrg {
  slug: string;
  keyAgeSeconds?: number;
  rewrapRemaining?: number;
  deliveryPending?: number;
  lastDeliveredAt?: number;
  pendingWrites: number;
}
