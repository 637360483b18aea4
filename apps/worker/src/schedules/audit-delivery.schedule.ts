import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { AuditDeliveryService } from '@coffer/audit';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { JobsService } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { OrgRegistry } from '@coffer/tenancy';
import { startSweep } from './sweep';

/** Enqueues a delivery job for each org that has a destination; the job finds what is new. */
@Injectable()
export class AuditDeliverySchedule implements OnApplicationBootstrap {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly registry: SchedulerRegistry,
    private readonly orgs: OrgRegistry,
    private readonly delivery: AuditDeliveryService,
    private readonly jobs: JobsService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  onApplicationBootstrap(): void {
    startSweep(this.registry, this.logger, 'audit-delivery', this.config.AUDIT_DELIVERY_CRON, () => this.tick());
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
