import { DynamicModule, Module } from '@nestjs/common';
import { resolve } from 'node:path';
import { AppConfig } from '@coffer/config';
import { LOGGER, Logger } from '@coffer/logging';
import { certificateNames } from './certificate';
import { CERTIFICATE_SOURCE, CertificateSource, InternalCaSource, StaticFilesSource, StoredAcmeSource } from './certificate-source';
import { CertificateService } from './certificate.service';
import { certificateId, CertificatesRepository } from './certificates.repository';
import { CertificatesModule } from './certificates.module';
import { PlainHttpListener } from './plain-http.listener';

/** Nothing when TLS_MODE=off: the API is then served over plain HTTP by the caller. */
@Module({})
export class TlsModule {
  static register(config: AppConfig): DynamicModule {
    if (config.TLS_MODE === 'off') return { module: TlsModule };
    return {
      module: TlsModule,
      imports: [CertificatesModule],
      providers: [
        {
          provide: CERTIFICATE_SOURCE,
          inject: [LOGGER, CertificatesRepository],
          useFactory: (logger: Logger, certificates: CertificatesRepository) => certificateSource(config, logger, certificates),
        },
        CertificateService,
        PlainHttpListener,
      ],
      exports: [CertificateService, PlainHttpListener],
    };
  }
}

function certificateSource(config: AppConfig, logger: Logger, certificates: CertificatesRepository): CertificateSource {
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
      // Ordered and renewed by the worker; every replica serves what the database holds.
      const names = certificateNames(config.TLS_DOMAINS, false);
      return new StoredAcmeSource(certificateId('acme', names), names, certificates, internalCa(), (error) =>
        logger.warn({ err: { message: (error as Error)?.message } }, 'stored certificate could not be opened; serving the previous one'),
      );
    }
    default:
      throw new Error(`TLS_MODE=${config.TLS_MODE} has no certificate source`);
  }
}
