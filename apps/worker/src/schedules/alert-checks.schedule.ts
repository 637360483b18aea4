import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { JobsService } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { startSweep } from './sweep';

/** Enqueues the alert checks (one job id: ticks that overlap a slow check enqueue nothing). */
@Injectable()
export class AlertChecksSchedule implements OnApplicationBootstrap {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly registry: SchedulerRegistry,
    private readonly jobs: JobsService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  onApplicationBootstrap(): void {
    startSweep(this.registry, this.logger, 'alert-checks', this.config.ALERT_CHECK_CRON, () => this.jobs.enqueue('alert-checks', {}));
  }
}
