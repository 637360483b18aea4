import { Inject, Injectable } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { CronJob, validateCronExpression } from 'cron';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { LOGGER, Logger } from '@coffer/logging';
import { OrgRegistry } from '@coffer/tenancy';
import { FAN_OUTS, JobName, JobSchedule, JOBS, QueueName } from './job-registry';
import { JobsService } from './jobs.service';

/** The jobs of the registry that have a schedule. */
export function scheduledJobs(jobs: Record<string, { schedule?: JobSchedule }> = JOBS): [JobName, JobSchedule][] {
  return Object.entries(jobs).flatMap(([name, { schedule }]) => (schedule ? [[name as JobName, schedule]] : []));
}

/** Checks each schedule: its cron setting exists and holds a cron expression, its fan-out is known. */
export function checkSchedules(jobs: Record<string, { schedule?: JobSchedule }>, config: Record<string, unknown>): string[] {
  const problems: string[] = [];
  for (const [name, { cron, fanOut }] of scheduledJobs(jobs)) {
    const cronTime = config[cron];
    if (typeof cronTime !== 'string') {
      problems.push(`job '${name}' is scheduled by unknown setting '${cron}'`);
    } else {
      const { valid, error } = validateCronExpression(cronTime);
      if (!valid) problems.push(`job '${name}': ${cron} '${cronTime}' is not a cron expression (${error?.message})`);
    }
    if (!FAN_OUTS.includes(fanOut)) problems.push(`job '${name}' has unknown fan-out '${fanOut}'`);
  }
  return problems;
}

/**
 * Enqueues each scheduled job of the registry on its cron (one cron job per job, named after it
 * in SchedulerRegistry), for whom its fan-out says. A tick only enqueues: whatever finds due work
 * is a job of its own.
 */
@Injectable()
export class JobScheduler {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly registry: SchedulerRegistry,
    private readonly orgs: OrgRegistry,
    private readonly jobs: JobsService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  /** Once the handlers and schedules are checked (JobWorkers): the schedules of `queues`' jobs. */
  start(queues: readonly QueueName[]): void {
    for (const [name, schedule] of scheduledJobs().filter(([name]) => queues.includes(JOBS[name].queue))) {
      const cron = CronJob.from({
        cronTime: this.config[schedule.cron],
        onTick: () => {
          this.tick(name).catch((error) => this.logger.error({ job: name, err: error.message }, 'scheduled enqueue failed; the next tick retries'));
        },
      });
      this.registry.addCronJob(name, cron);
      cron.start();
    }
  }

  /** One tick of `name`'s schedule: enqueues it and returns the job ids. */
  async tick(name: JobName): Promise<string[]> {
    const { schedule } = JOBS[name];
    if (!schedule) throw new Error(`job '${name}' has no schedule`);
    const enqueue = this.jobs.enqueue.bind(this.jobs) as (name: JobName, payload: object) => Promise<string>;
    const ids: string[] = [];
    if (schedule.fanOut !== 'per-org') ids.push(await enqueue(name, {}));
    if (schedule.fanOut !== 'global') for (const org of await this.orgs.listActive()) ids.push(await enqueue(name, { orgId: org.id }));
    return ids;
  }
}
