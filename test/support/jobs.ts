import type { INestApplicationContext } from '@nestjs/common';
import { QueueEvents } from 'bullmq';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { createRedis, JobName, JobScheduler, JobsService, QueueName, queuePrefix } from '@coffer/jobs';

/**
 * Runs `enqueue` (a scheduler's tick, an enqueue) against a running worker and waits until each
 * job whose id it returns has completed; answers their return values in that order, and rejects
 * when one fails. Events are read from just before `enqueue`, so a job that finishes at once (or
 * one enqueued earlier with the same id) is not missed.
 */
export async function awaitJobs<T = unknown>(
  worker: INestApplicationContext,
  enqueue: () => Promise<string[]>,
  { queue = 'maintenance', timeoutMs = 20_000 }: { queue?: QueueName; timeoutMs?: number } = {},
): Promise<T[]> {
  const config = worker.get<AppConfig>(APP_CONFIG);
  const jobs = worker.get(JobsService);
  const [last] = await jobs.redis.xrevrange(jobs.queue(queue).keys.events, '+', '-', 'COUNT', 1);
  const connection = createRedis(config.REDIS_URL, { name: 'coffer-test-events', forWorker: true });
  const events = new QueueEvents(queue, { connection, prefix: queuePrefix(config.REDIS_KEY_PREFIX), lastEventId: last?.[0] ?? '0' });
  const results = new Map<string, { value?: unknown; error?: string }>();
  let wake = () => undefined as void;
  events.on('completed', ({ jobId, returnvalue }) => (results.set(jobId, { value: returnvalue }), wake()));
  events.on('failed', ({ jobId, failedReason }) => (results.set(jobId, { error: failedReason }), wake()));
  try {
    const ids = await enqueue();
    const deadline = Date.now() + timeoutMs;
    while (!ids.every((id) => results.has(id))) {
      if (Date.now() > deadline) throw new Error(`jobs ${ids.filter((id) => !results.has(id)).join(', ')} did not finish in ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 100);
      });
    }
    return ids.map((id) => {
      const { value, error } = results.get(id)!;
      if (error !== undefined) throw new Error(`job ${id} failed: ${error}`);
      return value as T;
    });
  } finally {
    await events.close();
    connection.disconnect();
  }
}

/** One tick of `name`'s schedule, then its jobs run to completion: their return values. */
export function tickAndAwait<T = unknown>(worker: INestApplicationContext, name: JobName): Promise<T[]> {
  return awaitJobs<T>(worker, () => worker.get(JobScheduler).tick(name));
}
