import { SchedulerRegistry } from '@nestjs/schedule';
import { CronJob } from 'cron';
import type { Logger } from '@coffer/logging';

/**
 * Starts a schedule. Its tick only finds due work in PostgreSQL and enqueues jobs with fixed ids
 * (ADR 0005), so a failed or missed tick is caught up by the next, and two workers ticking
 * together enqueue the work once.
 */
export function startSweep(registry: SchedulerRegistry, logger: Logger, name: string, cronTime: string, tick: () => Promise<unknown>): void {
  const job = CronJob.from({
    cronTime,
    onTick: () => {
      tick().catch((error) => logger.error({ err: error.message }, `${name} sweep failed`));
    },
  });
  registry.addCronJob(name, job);
  job.start();
}
