import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { CronJob } from 'cron';
import { AuditDeliveryService } from '@coffer/audit';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { JobsService } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { OrgsService } from '@coffer/orgs';

/** Enqueues a delivery job for each org that has a destination; the job finds what is new. */
@Injectable()
export class AuditDeliverySchedule implements OnApplicationBootstrap {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly registry: SchedulerRegistry,
    private readonly orgs: OrgsService,
    private readonly delivery: AuditDeliveryService,
    private readonly jobs: JobsService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  onApplicationBootstrap(): void {
    const job = CronJob.from({
      cronTime: this.config.AUDIT_DELIVERY_CRON,
      onTick: () => {
        this.tick().catch((error) => this.logger.error({ err: error.message }, 'audit-delivery sweep failed'));
      },
    });
    this.registry.addCronJob('audit-delivery', job);
    job.start();
  }

  async tick(): Promise<number> {
    let enqueued = 0;
    for (const org of await this.orgs.listActive()) {
      if (await this.delivery.hasDestination(org)) {
        await this.jobs.enqueue('audit-delivery', { orgId: org.id });
        enqueued++;
      }
    }
    return enqueued;
  }
}
