import { DynamicModule, Module } from '@nestjs/common';
import { AuditModule } from '@coffer/audit';
import { AuthModule } from '@coffer/auth';
import { AppConfig, ConfigModule } from '@coffer/config';
import { DatabaseModule } from '@coffer/database';
import { EncryptionModule } from '@coffer/encryption';
import { JobsModule } from '@coffer/jobs';
import { KeysModule } from '@coffer/keys';
import { KmsModule } from '@coffer/kms';
import { LoggingModule } from '@coffer/logging';
import { MetricsModule } from '@coffer/metrics';
import { OrgsModule } from '@coffer/orgs';
import { PackagesModule } from '@coffer/packages';
import { CertificatesModule, TlsModule } from '@coffer/tls';
import { TenancyModule } from '@coffer/tenancy';
import { ApiKeysController } from './controllers/api-keys.controller';
import { AssetLinksController } from './controllers/asset-links.controller';
import { AuditLogsController } from './controllers/audit-logs.controller';
import { EncryptionStatusController } from './controllers/encryption-status.controller';
import { CertificatesController } from './controllers/certificates.controller';
import { HealthController } from './controllers/health.controller';
import { KeysController } from './controllers/keys.controller';
import { OpenApiController, OpenApiDocument } from './controllers/openapi.controller';
import { OrganizationsController } from './controllers/organizations.controller';
import { PackagesController } from './controllers/packages.controller';
import { PendingWritesController } from './controllers/pending-writes.controller';
import { UsersController } from './controllers/users.controller';

@Module({})
export class ApiModule {
  static register(config: AppConfig): DynamicModule {
    return {
      module: ApiModule,
      imports: [
        ConfigModule.forRoot(config),
        LoggingModule,
        DatabaseModule,
        TenancyModule,
        KmsModule,
        AuditModule,
        JobsModule,
        OrgsModule,
        KeysModule,
        MetricsModule,
        EncryptionModule,
        AuthModule,
        CertificatesModule,
        PackagesModule,
        TlsModule.register(config),
      ],
      controllers: [HealthController, OrganizationsController, UsersController, ApiKeysController, AuditLogsController, KeysController, EncryptionStatusController, CertificatesController, PackagesController, PendingWritesController, AssetLinksController, OpenApiController],
      providers: [OpenApiDocument],
    };
  }
}
