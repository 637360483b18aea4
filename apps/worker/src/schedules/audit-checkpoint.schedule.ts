import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { JobsService } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { OrgRegistry } from '@coffer/tenancy';
import { startSweep } from './sweep';

/**
 * Enqueues a checkpoint job per chain (the control plane's and each active org's). The job
 * signs only a head that moved, so an idle chain costs a query, not a KMS call.
 */
@Injectable()
export class AuditCheckpointSchedule implements OnApplicationBootstrap {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly registry: SchedulerRegistry,
    private readonly orgs: OrgRegistry,
    private readonly jobs: JobsService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  onApplicationBootstrap(): void {
    startSweep(this.registry, this.logger, 'audit-checkpoint', this.config.AUDIT_CHECKPOINT_CRON, () => this.tick());
  }

  async tick(): Promise<number> {
    await this.jobs.enqueue('audit-checkpoint', {});
    const orgs = await this.orgs.listActive();
    for (const org of orgs) await this.jobs.enqueue('audit-checkpoint', { orgId: org.id });
    return orgs.length + 1;
  }
}
