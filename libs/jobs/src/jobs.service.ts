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
