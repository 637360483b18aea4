import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { LOGGER, Logger } from '@coffer/logging';
import { CertificateRenewalService } from '@coffer/tls';
import { startSweep } from './sweep';

/**
 * Finds certificates due for renewal (or for their next attempt after a failure) in PostgreSQL
 * and enqueues one job each, with the certificate's fixed job id: two workers ticking together
 * enqueue it once, and a missed tick is caught up by the next.
 */
@Injectable()
export class CertificateRenewalSchedule implements OnApplicationBootstrap {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly registry: SchedulerRegistry,
    private readonly renewal: CertificateRenewalService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  onApplicationBootstrap(): void {
    startSweep(this.registry, this.logger, 'certificate-renewal', this.config.TLS_RENEWAL_CRON, () => this.renewal.enqueueDue());
  }
}
