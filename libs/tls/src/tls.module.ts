import { DynamicModule, Module } from '@nestjs/common';
import { resolve } from 'node:path';
import { AppConfig } from '@coffer/config';
import { LOGGER, Logger } from '@coffer/logging';
import { certificateNames } from './certificate';
import { AcmeRepository } from './acme.repository';
import { AcmeSource, CERTIFICATE_SOURCE, CertificateSource, InternalCaSource, StaticFilesSource } from './certificate-source';
import { CertificateService } from './certificate.service';
import { ChallengeStore } from './challenge-store';
import { OrderLock } from './order-lock';
import { PlainHttpListener } from './plain-http.listener';

/** Nothing when TLS_MODE=off: the API is then served over plain HTTP by the caller. */
@Module({})
export class TlsModule {
  static register(config: AppConfig): DynamicModule {
    if (config.TLS_MODE === 'off') return { module: TlsModule };
    return {
      module: TlsModule,
      providers: [
        ChallengeStore,
        OrderLock,
        {
          provide: CERTIFICATE_SOURCE,
          inject: [LOGGER, ChallengeStore, OrderLock],
          useFactory: (logger: Logger, challenges: ChallengeStore, lock: OrderLock) => certificateSource(config, logger, challenges, lock),
        },
        CertificateService,
        PlainHttpListener,
      ],
      exports: [ChallengeStore, CertificateService, PlainHttpListener],
    };
  }
}

function certificateSource(config: AppConfig, logger: Logger, challenges: ChallengeStore, lock: OrderLock): CertificateSource {
  const dir = resolve(config.TLS_DIR);
  const internalCa = () =>
    new InternalCaSource(dir, certificateNames(config.TLS_DOMAINS, true), ({ created, path }) =>
      logger.info({ path }, created === 'ca' ? 'internal CA created' : 'certificate issued by the internal CA'),
    );
  switch (config.TLS_MODE) {
    case 'files':
      return new StaticFilesSource({ certFile: resolve(config.TLS_CERT_FILE!), keyFile: resolve(config.TLS_KEY_FILE!) });
    case 'internal-ca':
      return internalCa();
    case 'acme': {
      const acme = new AcmeRepository(
        {
          directoryUrl: config.ACME_DIRECTORY_URL,
          email: config.ACME_EMAIL,
          accountKeyFile: resolve(dir, 'acme', 'account.key'),
          selfCheck: config.ACME_SELF_CHECK,
        },
        challenges,
      );
      const names = certificateNames(config.TLS_DOMAINS, false);
      // An order takes seconds; the lock outlives a stuck one by far but not a restart loop.
      const orderLock = (work: () => Promise<void>) => lock.run('acme-order', 10 * 60_000, work);
      return new AcmeSource(dir, names, acme, internalCa(), config.TLS_RELOAD_INTERVAL_MS, logger, orderLock);
    }
    default:
      throw new Error(`TLS_MODE=${config.TLS_MODE} has no certificate source`);
  }
}
