import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { currentAuditScope } from '@coffer/audit';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { DEFAULT_JOB_OPTIONS, JobData, JobName, JobPayloads, JOBS, QueueName } from './job-registry';
import { createRedis, queuePrefix } from './redis';

/** Enqueues jobs (API and worker schedules alike) and owns the process's Redis connection. */
@Injectable()
export class JobsService implements OnApplicationShutdown {
  readonly redis: Redis;
  private readonly queues = new Map<QueueName, Queue>();

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {
    this.redis = createRedis(config.REDIS_URL, { name: `coffer-${process.env.COFFER_SERVICE ?? 'app'}`, forWorker: true });
    this.redis.on('error', () => undefined); // readiness reports it; ioredis reconnects by itself
  }

  /** A job enqueued by a request carries the request's id, IP and user agent into its audit entries. */
  async enqueue<K extends JobName>(name: K, payload: JobPayloads[K]): Promise<string> {
    const definition = JOBS[name];
    const jobId = definition.jobId(payload);
    const data: JobData<K> = { ...payload, requestSource: currentAuditScope()?.source };
    await this.queue(definition.queue).add(name, data, { ...DEFAULT_JOB_OPTIONS, ...definition.options, jobId });
    return jobId;
  }

  /**
   * Enqueues the job and waits up to `waitMs` for it: its return value, or `finished: false`
   * while it still runs. A failed job throws.
   */
  async enqueueAndWait<K extends JobName>(name: K, payload: JobPayloads[K], waitMs: number): Promise<{ finished: true; result: unknown } | { finished: false }> {
    const queue = this.queue(JOBS[name].queue);
    const jobId = JOBS[name].jobId(payload);
    await this.enqueue(name, payload);
    const deadline = Date.now() + waitMs;
    for (;;) {
      // The state first, then the job: a job read before it completed holds no return value yet.
      const state = await queue.getJobState(jobId);
      if (state === 'completed') return { finished: true, result: (await queue.getJob(jobId))!.returnvalue };
      // The reason stays in the handler's log: it may name what the caller must not see.
      if (state === 'failed') throw new Error(`job ${jobId} failed`);
      if (Date.now() >= deadline) return { finished: false };
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** The payloads of the jobs `name` waiting or running now (a few: for a status lookup). */
  async pending<K extends JobName>(name: K): Promise<JobPayloads[K][]> {
    const jobs = await this.queue(JOBS[name].queue).getJobs(['waiting', 'active', 'delayed', 'prioritized']);
    return jobs.filter((job) => job?.name === name).map((job) => job.data as JobPayloads[K]);
  }

  queue(name: QueueName): Queue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue(name, { connection: this.redis, prefix: queuePrefix(this.config.REDIS_KEY_PREFIX) });
      this.queues.set(name, queue);
    }
    return queue;
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    this.redis.disconnect();
  }
}
