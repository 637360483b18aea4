import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { JobsService } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { startSweep } from './sweep';
import { ApiKeysService } from '@coffer/users';
import { OrgRegistry } from '@coffer/tenancy';

/**
 * Finds orgs with keys past their expiry and enqueues one job each. It does no work itself:
 * the due state lives in PostgreSQL, so a missed tick is caught up by the next, and the fixed
 * job id means two workers ticking together enqueue the work once.
 */
@Injectable()
export class ExpireApiKeysSchedule implements OnApplicationBootstrap {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly registry: SchedulerRegistry,
    private readonly orgs: OrgRegistry,
    private readonly apiKeys: ApiKeysService,
    private readonly jobs: JobsService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  onApplicationBootstrap(): void {
    startSweep(this.registry, this.logger, 'expire-api-keys', this.config.EXPIRE_API_KEYS_CRON, () => this.tick());
  }

  async tick(): Promise<number> {
    let enqueued = 0;
    for (const org of await this.orgs.listActive()) {
      if ((await this.apiKeys.countDueToExpire(org)) > 0) {
        await this.jobs.enqueue('expire-api-keys', { orgId: org.id });
        enqueued++;
      }
    }
    return enqueued;
  }
}
