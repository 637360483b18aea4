import { Module } from '@nestjs/common';
import { AlertsModule } from '@coffer/alerts';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { EgressPolicy } from '@coffer/http';
import { AcmeRepository } from './acme.repository';
import { CertificateRenewalService } from './certificate-renewal.service';
import { CertificatesRepository } from './certificates.repository';
import { ChallengeStore } from './challenge-store';
import { ClockRepository } from './clock.repository';
import { OrderLock } from './order-lock';

/** Stored certificates and their renewal: the worker renews, the API and the CLI list and force. */
@Module({
  imports: [AlertsModule],
  providers: [
    CertificatesRepository,
    ChallengeStore,
    ClockRepository,
    OrderLock,
    {
      provide: AcmeRepository,
      inject: [APP_CONFIG, ChallengeStore, CertificatesRepository],
      useFactory: (config: AppConfig, challenges: ChallengeStore, certificates: CertificatesRepository) =>
        new AcmeRepository(
          { directoryUrl: config.ACME_DIRECTORY_URL, email: config.ACME_EMAIL, selfCheck: config.ACME_SELF_CHECK, httpRetries: config.ACME_HTTP_RETRIES },
          challenges,
          certificates,
          new EgressPolicy(config.OUTBOUND_ALLOWED_HOSTS),
        ),
    },
    CertificateRenewalService,
  ],
  exports: [CertificatesRepository, ChallengeStore, CertificateRenewalService],
})
export class CertificatesModule {}
