import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { JobsService } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { OrgRegistry } from '@coffer/tenancy';
import { startSweep } from './sweep';

/** Enqueues a package sweep per active org; the job finds what is due in the org's database. */
@Injectable()
export class SweepPackagesSchedule implements OnApplicationBootstrap {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly registry: SchedulerRegistry,
    private readonly orgs: OrgRegistry,
    private readonly jobs: JobsService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  onApplicationBootstrap(): void {
    startSweep(this.registry, this.logger, 'sweep-packages', this.config.PACKAGE_SWEEP_CRON, () => this.tick());
  }

  async tick(): Promise<number> {
    const orgs = await this.orgs.listActive();
    for (const org of orgs) await this.jobs.enqueue('sweep-packages', { orgId: org.id });
    return orgs.length;
  }
}
