import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown, SetMetadata } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { Job, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { AuditService } from '@coffer/audit';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { LOGGER, Logger } from '@coffer/logging';
import { NO_REQUEST } from '@coffer/tenancy';
import { JobData, JobName, JobPayloads, JOBS, QUEUE_NAMES } from './job-registry';
import { createRedis, queuePrefix } from './redis';

const PROCESSES_KEY = 'coffer:processes';

/** Marks a provider as the handler of one job of the registry. */
export const Processes = (name: JobName) => SetMetadata(PROCESSES_KEY, name);

export interface JobProcessor<K extends JobName> {
  process(payload: JobPayloads[K], job: Job<JobPayloads[K]>): Promise<unknown>;
}

type Handlers = Map<JobName, JobProcessor<JobName>>;

/** Checks the handlers against the registry: each job exactly one handler, nothing unknown. */
export function checkHandlers(found: { name: string; owner: string }[]): string[] {
  const problems: string[] = [];
  for (const name of Object.keys(JOBS)) {
    const owners = found.filter((f) => f.name === name).map((f) => f.owner);
    if (owners.length === 0) problems.push(`job '${name}' has no handler`);
    if (owners.length > 1) problems.push(`job '${name}' has several handlers: ${owners.join(', ')}`);
  }
  for (const f of found) if (!(f.name in JOBS)) problems.push(`${f.owner} handles unknown job '${f.name}'`);
  return problems;
}

/** Runs one BullMQ worker per queue and dispatches jobs to their @Processes handler. */
@Injectable()
export class JobWorkers implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly workers: Worker[] = [];
  private readonly connections: Redis[] = [];

  constructor(
    private readonly discovery: DiscoveryService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly audit: AuditService,
  ) {}

  onApplicationBootstrap(): void {
    const handlers = this.discoverHandlers();
    for (const queue of QUEUE_NAMES) {
      const connection = createRedis(this.config.REDIS_URL, { name: `coffer-worker-${queue}`, forWorker: true });
      this.connections.push(connection);
      const worker = new Worker(queue, (job) => this.run(handlers, job), {
        connection,
        prefix: queuePrefix(this.config.REDIS_KEY_PREFIX),
        concurrency: 4,
        // A job whose worker died is handed to another once its lock lapses.
        lockDuration: this.config.JOB_LOCK_MS,
        stalledInterval: this.config.JOB_LOCK_MS,
      });
      worker.on('failed', (job, error) =>
        this.logger.warn({ job: job?.name, jobId: job?.id, attempt: job?.attemptsMade, err: error.message }, 'job failed'),
      );
      worker.on('error', (error) => this.logger.error({ queue, err: error.message }, 'queue worker error'));
      this.workers.push(worker);
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
    // BullMQ leaves a connection it was handed open; it is ours to close.
    for (const connection of this.connections) connection.disconnect();
  }

  private discoverHandlers(): Handlers {
    const found = this.discovery
      .getProviders()
      .filter((wrapper) => wrapper.metatype && wrapper.instance)
      .map((wrapper) => ({
        name: Reflect.getMetadata(PROCESSES_KEY, wrapper.metatype as object) as JobName | undefined,
        owner: (wrapper.metatype as { name: string }).name,
        instance: wrapper.instance as JobProcessor<JobName>,
      }))
      .filter((f): f is { name: JobName; owner: string; instance: JobProcessor<JobName> } => f.name !== undefined);
    const problems = checkHandlers(found);
    if (problems.length) throw new Error(`refusing to start the worker:\n  - ${problems.join('\n  - ')}`);
    return new Map(found.map((f) => [f.name, f.instance]));
  }

  /**
   * A job runs like a mutating request: one unit of work, `audit()` available, entries committed
   * with its changes to the chain of the org it names with setAuditOrg() (else the control plane).
   */
  private async run(handlers: Handlers, job: Job<JobData<JobName>>) {
    const started = Date.now();
    const { requestSource, ...payload } = job.data;
    const result = await this.audit.run({
      actor: { kind: 'system', id: `system:${job.name}` },
      source: requestSource ?? NO_REQUEST,
      transactional: true,
      chain: (org) => this.audit.chain(org),
      work: () => handlers.get(job.name as JobName)!.process(payload as JobPayloads[JobName], job),
    });
    this.logger.info({ job: job.name, jobId: job.id, durationMs: Date.now() - started }, 'job completed');
    return result;
  }
}
