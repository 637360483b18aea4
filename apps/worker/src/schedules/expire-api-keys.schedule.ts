import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { CronJob } from 'cron';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { JobsService } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { OrgsService } from '@coffer/orgs';
import { ApiKeysService } from '@coffer/users';

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
    private readonly orgs: OrgsService,
    private readonly apiKeys: ApiKeysService,
    private readonly jobs: JobsService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  onApplicationBootstrap(): void {
    const job = CronJob.from({
      cronTime: this.config.EXPIRE_API_KEYS_CRON,
      onTick: () => {
        this.tick().catch((error) => this.logger.error({ err: error.message }, 'expire-api-keys sweep failed'));
      },
    });
    this.registry.addCronJob('expire-api-keys', job);
    job.start();
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
