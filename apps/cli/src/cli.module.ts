import { DynamicModule, Module } from '@nestjs/common';
import { AuditModule } from '@coffer/audit';
import { AppConfig, ConfigModule } from '@coffer/config';
import { DatabaseModule } from '@coffer/database';
import { EncryptionModule } from '@coffer/encryption';
import { JobsModule } from '@coffer/jobs';
import { KeysModule } from '@coffer/keys';
import { KmsModule } from '@coffer/kms';
import { LoggingModule } from '@coffer/logging';
import { OrgsModule } from '@coffer/orgs';
import { PackageWrappedKeysModule } from '@coffer/packages';
import { StorageModule } from '@coffer/storage';
import { CertificatesModule } from '@coffer/tls';
import { TenancyModule } from '@coffer/tenancy';

/** What the admin CLI needs: the same services as the API (Redis to enqueue jobs), without HTTP or the worker. */
@Module({})
export class CliModule {
  static register(config: AppConfig): DynamicModule {
    return {
      module: CliModule,
      imports: [ConfigModule.forRoot(config), LoggingModule, DatabaseModule, TenancyModule, KmsModule, AuditModule, OrgsModule, JobsModule, KeysModule, CertificatesModule, StorageModule, EncryptionModule, PackageWrappedKeysModule],
    };
  }
}
