import { DynamicModule, Global, Module } from '@nestjs/common';
import pino from 'pino';
import { AuditModule } from '@coffer/audit';
import { APP_CONFIG, AppConfig, ConfigModule } from '@coffer/config';
import { DatabaseModule } from '@coffer/database';
import { EncryptionModule } from '@coffer/encryption';
import { JobsModule } from '@coffer/jobs';
import { KeysModule } from '@coffer/keys';
import { KmsModule } from '@coffer/kms';
import { createLogger, LOGGER } from '@coffer/logging';
import { OrgsModule } from '@coffer/orgs';
import { PackageWrappedKeysModule } from '@coffer/packages';
import { StorageModule } from '@coffer/storage';
import { CertificatesModule } from '@coffer/tls';
import { TenancyModule } from '@coffer/tenancy';
import { UsersModule } from '@coffer/users';

/**
 * The CLI's logs go to stderr, written at once (the process exits right after its answer):
 * stdout is the command's answer alone, JSON or audit:export's NDJSON.
 */
@Global()
@Module({
  providers: [{ provide: LOGGER, inject: [APP_CONFIG], useFactory: (config: AppConfig) => createLogger(config.LOG_LEVEL, pino.destination({ fd: 2, sync: true })) }],
  exports: [LOGGER],
})
class CliLoggingModule {}

/** What the admin CLI needs: the same services as the API (Redis to enqueue jobs), without HTTP or the worker. */
@Module({})
export class CliModule {
  static register(config: AppConfig): DynamicModule {
    return {
      module: CliModule,
      imports: [ConfigModule.forRoot(config), CliLoggingModule, DatabaseModule, TenancyModule, KmsModule, AuditModule, OrgsModule, JobsModule, KeysModule, CertificatesModule, StorageModule, EncryptionModule, PackageWrappedKeysModule, UsersModule],
    };
  }
}
