import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown, SetMetadata } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { Job, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Histogram } from 'prom-client';
import { AuditService, setAuditOrg } from '@coffer/audit';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { captureError, LOGGER, Logger } from '@coffer/logging';
import { NO_REQUEST, OrgRef, OrgRegistry } from '@coffer/tenancy';
import { JobData, JobName, JobPayloads, JOBS, QUEUE_NAMES, QueueName } from './job-registry';
import { checkSchedules, JobScheduler } from './job-scheduler';
import { createRedis, queuePrefix } from './redis';

const PROCESSES_KEY = 'coffer:processes';

/**
 * Every job run by this process, by job name and outcome (`completed`, `failed`, `skipped`): its
 * count is the runs, `outcome="failed"` the failures. Registered on the worker's listener
 * (libs/metrics WorkerMetricsService), not on the API's, which runs no job.
 */
export const jobDuration = new Histogram({
  name: 'coffer_job_duration_seconds',
  help: 'Background job run time by job and outcome (completed, failed, skipped)',
  labelNames: ['job_name', 'outcome'],
  buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900],
  registers: [],
});

/** The queues a process consumes (a provider): the worker `maintenance`, the provisioner `provisioning`. */
export const CONSUMED_QUEUES = Symbol('CONSUMED_QUEUES');

/** Marks a provider as the handler of one job of the registry. */
export const Processes = (name: JobName) => SetMetadata(PROCESSES_KEY, name);

/** The org a payload names: an active one for `{ orgId }`, none for a payload without `orgId`. */
type OrgOf<P> = P extends Record<string, never>
  ? undefined
  : 'orgId' extends keyof P
    ? undefined extends P['orgId' & keyof P]
      ? OrgRef | undefined
      : OrgRef
    : undefined;

export interface JobContext<K extends JobName> {
  /** The active org the payload's `orgId` names, already set as the audit scope's org. */
  org: OrgOf<JobPayloads[K]>;
  job: Job<JobData<K>>;
}

export interface JobProcessor<K extends JobName> {
  process(payload: JobPayloads[K], context: JobContext<K>): Promise<unknown>;
}

type Handlers = Map<JobName, JobProcessor<JobName>>;

/**
 * Checks the handlers against the registry: each job of the consumed queues exactly one
 * handler, nothing unknown or of another process's queue.
 */
export function checkHandlers(found: { name: string; owner: string }[], queues: readonly QueueName[] = QUEUE_NAMES): string[] {
  const problems: string[] = [];
  const consumed = (name: string) => queues.includes(JOBS[name as JobName].queue);
  for (const name of Object.keys(JOBS).filter(consumed)) {
    const owners = found.filter((f) => f.name === name).map((f) => f.owner);
    if (owners.length === 0) problems.push(`job '${name}' has no handler`);
    if (owners.length > 1) problems.push(`job '${name}' has several handlers: ${owners.join(', ')}`);
  }
  for (const f of found) {
    if (!(f.name in JOBS)) problems.push(`${f.owner} handles unknown job '${f.name}'`);
    else if (!consumed(f.name)) problems.push(`${f.owner} handles '${f.name}' of queue '${JOBS[f.name as JobName].queue}', which this process does not consume`);
  }
  return problems;
}

/**
 * Runs one BullMQ worker per consumed queue and dispatches jobs to their @Processes handler, then
 * starts those queues' schedules. Refuses to start while a job has no handler or a schedule no
 * valid cron.
 */
@Injectable()
export class JobWorkers implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly workers: Worker[] = [];
  private readonly connections: Redis[] = [];

  constructor(
    private readonly discovery: DiscoveryService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly audit: AuditService,
    private readonly orgs: OrgRegistry,
    private readonly scheduler: JobScheduler,
    @Inject(CONSUMED_QUEUES) private readonly queues: readonly QueueName[],
  ) {}

  onApplicationBootstrap(): void {
    const handlers = this.discoverHandlers();
    for (const queue of this.queues) {
      const connection = createRedis(this.config.REDIS_URL, { name: `coffer-worker-${queue}`, forWorker: true });
      this.connections.push(connection);
      const worker = new Worker(queue, (job) => this.timed(handlers, job), {
        connection,
        prefix: queuePrefix(this.config.REDIS_KEY_PREFIX),
        concurrency: 4,
        // A job whose worker died is handed to another once its lock lapses.
        lockDuration: this.config.JOB_LOCK_MS,
        stalledInterval: this.config.JOB_LOCK_MS,
      });
      worker.on('failed', (job, error) => {
        this.logger.warn({ job: job?.name, jobId: job?.id, attempt: job?.attemptsMade, err: error.message }, 'job failed');
        // The job's name and id say where to look; its payload (an org's data) is not sent.
        captureError(error, { job: job?.name, jobId: job?.id });
      });
      worker.on('error', (error) => this.logger.error({ queue, err: error.message }, 'queue worker error'));
      this.workers.push(worker);
    }
    this.scheduler.start(this.queues);
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
    const problems = [...checkHandlers(found, this.queues), ...checkSchedules(JOBS, this.config)];
    if (problems.length) throw new Error(`refusing to start the worker:\n  - ${problems.join('\n  - ')}`);
    return new Map(found.map((f) => [f.name, f.instance]));
  }

  /** run(), observed in coffer_job_duration_seconds. */
  private async timed(handlers: Handlers, job: Job<JobData<JobName>>) {
    const end = jobDuration.startTimer({ job_name: job.name });
    try {
      const result = await this.run(handlers, job);
      end({ outcome: (result as { skipped?: unknown } | undefined)?.skipped ? 'skipped' : 'completed' });
      return result;
    } catch (error) {
      end({ outcome: 'failed' });
      throw error;
    }
  }

  /**
   * A job runs like a mutating request (unless its definition says otherwise): one unit of work,
   * `audit()` available, entries committed with its changes to the chain of the org its payload
   * names (else the control plane's, unless the handler names one with setAuditOrg()). A job
   * whose org is gone or not active is skipped.
   */
  private async run(handlers: Handlers, job: Job<JobData<JobName>>) {
    const started = Date.now();
    const name = job.name as JobName;
    const { requestSource, ...payload } = job.data;
    const orgId = (payload as { orgId?: string }).orgId;
    const org = orgId === undefined ? undefined : await this.orgs.resolveById(orgId);
    if (orgId !== undefined && !org) {
      this.logger.info({ job: job.name, jobId: job.id, orgId }, 'job skipped: its org is gone or not active');
      return { skipped: 'org_not_active' };
    }
    const result = await this.audit.run({
      actor: { kind: 'system', id: `system:${job.name}` },
      source: requestSource ?? NO_REQUEST,
      transactional: JOBS[name].transactional ?? true,
      chain: (scopeOrg) => this.audit.chain(scopeOrg),
      work: () => {
        if (org) setAuditOrg(org);
        const context = { org, job } as JobContext<JobName>;
        return handlers.get(name)!.process(payload as JobPayloads[JobName], context);
      },
    });
    this.logger.info({ job: job.name, jobId: job.id, durationMs: Date.now() - started }, 'job completed');
    return result;
  }
}
