import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { auditWriteFailures } from '@coffer/audit';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { DatabaseService } from '@coffer/database';
import { jobDuration, JobsService } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';

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
  private server?: Server;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly db: DatabaseService,
    private readonly jobs: JobsService,
  ) {
    collectDefaultMetrics({ register: this.registry, prefix: 'coffer_' });
    this.registry.registerMetric(jobDuration);
    this.registry.registerMetric(auditWriteFailures);
  }

  get port(): number | undefined {
    return (this.server?.address() as AddressInfo | null)?.port;
  }

  async health(): Promise<{ status: 'ok' | 'unavailable'; checks: { postgres: 'ok' | 'down'; redis: 'ok' | 'down' } }> {
    const probe = (check: () => Promise<unknown>) => {
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), 2000).unref());
      return Promise.race([check(), timeout]).then(
        () => 'ok' as const,
        () => 'down' as const,
      );
    };
    const [postgres, redis] = await Promise.all([probe(() => this.db.control.query('SELECT 1')), probe(() => this.jobs.redis.ping())]);
    return { status: postgres === 'ok' && redis === 'ok' ? 'ok' : 'unavailable', checks: { postgres, redis } };
  }

  async onApplicationBootstrap(): Promise<void> {
    this.server = createServer((request, response) => {
      const fail = (error: Error) => {
        this.logger.error({ err: error.message }, 'worker metrics or health failed');
        response.writeHead(500, { 'content-type': 'text/plain' }).end('failed\n');
      };
      if (request.method === 'GET' && request.url === '/metrics') {
        this.registry.metrics().then((text) => response.writeHead(200, { 'content-type': this.registry.contentType }).end(text), fail);
      } else if (request.method === 'GET' && request.url === '/health') {
        this.health().then((answer) => {
          response.writeHead(answer.status === 'ok' ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
        }, fail);
      } else {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      }
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject).listen(workerMetricsPort(this.config), this.config.METRICS_HOST, resolve);
    });
    this.logger.info({ host: this.config.METRICS_HOST, port: this.port }, 'worker metrics and health listening');
  }

  async onApplicationShutdown(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
