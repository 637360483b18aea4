import { DynamicModule, Module } from '@nestjs/common';
import { AuditModule } from '@coffer/audit';
import { AuthModule } from '@coffer/auth';
import { AppConfig, ConfigModule } from '@coffer/config';
import { DatabaseModule } from '@coffer/database';
import { JobsModule } from '@coffer/jobs';
import { KmsModule } from '@coffer/kms';
import { LoggingModule } from '@coffer/logging';
import { OrgsModule } from '@coffer/orgs';
import { PackagesModule } from '@coffer/packages';
import { TlsModule } from '@coffer/tls';
import { ApiKeysController } from './controllers/api-keys.controller';
import { AssetLinksController } from './controllers/asset-links.controller';
import { AuditLogsController } from './controllers/audit-logs.controller';
import { HealthController } from './controllers/health.controller';
import { OpenApiController, OpenApiDocument } from './controllers/openapi.controller';
import { OrganizationsController } from './controllers/organizations.controller';
import { PackagesController } from './controllers/packages.controller';
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
        KmsModule,
        AuditModule,
        JobsModule,
        OrgsModule,
        AuthModule,
        PackagesModule,
        TlsModule.register(config),
      ],
      controllers: [HealthController, OrganizationsController, UsersController, ApiKeysController, AuditLogsController, PackagesController, AssetLinksController, OpenApiController],
      providers: [OpenApiDocument],
    };
  }
}
