import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { auditWriteFailures } from '@coffer/audit';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { DatabaseService } from '@coffer/database';
import { jobDuration, JobsService } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { coreProbes, PlainListener, Probe } from './plain-listener';

/** The worker's listener port: WORKER_METRICS_PORT, else METRICS_PORT + 1 (0, a free port, stays 0). */
export function workerMetricsPort(config: Pick<AppConfig, 'METRICS_PORT' | 'WORKER_METRICS_PORT'>): number {
  return config.WORKER_METRICS_PORT ?? (config.METRICS_PORT === 0 ? 0 : config.METRICS_PORT + 1);
}

/**
 * The worker's own listener, beside the API's (MetricsService), on METRICS_HOST and
 * workerMetricsPort(): `GET /metrics`, the jobs it runs (coffer_job_duration_seconds), the audit
 * appends it could not make and the process's own figures, and not the API's per-org or KMS
 * gauges, which the API exports already (a second copy would double every alert on them);
 * `GET /health`, 200 `ok` while PostgreSQL and Redis answer, else 503: the compose healthcheck
 * (`coffer healthcheck worker`).
 */
@Injectable()
export class WorkerMetricsService implements OnApplicationBootstrap, OnApplicationShutdown {
  readonly registry = new Registry();
  private readonly listener: PlainListener;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly db: DatabaseService,
    private readonly jobs: JobsService,
  ) {
    this.listener = new PlainListener('worker metrics and health', this.logger, {
      '/metrics': async () => ({ status: 200, type: this.registry.contentType, body: await this.registry.metrics() }),
      '/health': async () => {
        const answer = await this.health();
        return { status: answer.status === 'ok' ? 200 : 503, type: 'application/json', body: JSON.stringify(answer) };
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'coffer_' });
    this.registry.registerMetric(jobDuration);
    this.registry.registerMetric(auditWriteFailures);
  }

  get port(): number | undefined {
    return this.listener.port;
  }

  async health(): Promise<{ status: 'ok' | 'unavailable'; checks: { postgres: Probe; redis: Probe } }> {
    const checks = await coreProbes(this.db, this.jobs);
    return { status: checks.postgres === 'ok' && checks.redis === 'ok' ? 'ok' : 'unavailable', checks };
  }

  onApplicationBootstrap(): Promise<void> {
    return this.listener.listen(this.config.METRICS_HOST, workerMetricsPort(this.config));
  }

  onApplicationShutdown(): Promise<void> {
    return this.listener.close();
  }
}
