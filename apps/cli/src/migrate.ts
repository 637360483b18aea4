import { DynamicModule, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AuditModule } from '@coffer/audit';
import { PlatformTokensRepository, PlatformTokensService } from '@coffer/auth';
import { AppConfig, ConfigModule } from '@coffer/config';
import { DatabaseModule, SchemaService } from '@coffer/database';
import { JobsModule } from '@coffer/jobs';
import { assertLocalMasterKeyOpensStore, KmsModule } from '@coffer/kms';
import { LoggingModule } from '@coffer/logging';
import { OrgProvisioner, OrgProvisioningModule } from '@coffer/orgs';
import { OrgRegistry, TenancyModule } from '@coffer/tenancy';

@Module({})
class MigrateModule {
  static register(config: AppConfig): DynamicModule {
    return {
      module: MigrateModule,
      imports: [ConfigModule.forRoot(config), LoggingModule, DatabaseModule, TenancyModule, KmsModule, AuditModule, JobsModule, OrgProvisioningModule],
      providers: [PlatformTokensRepository, PlatformTokensService],
    };
  }
}

export interface MigrationResult {
  controlPlane: { from: number; to: number };
  organizations: number;
  /** Where the platform admin's bootstrap token was written, at the first migration only. */
  bootstrapTokenFile?: string;
}

/**
 * `coffer migrate`, the one-shot that runs before the API, the worker and the provisioner start
 * (compose's `migrate` service, the local start): with the owner's credentials, the control
 * plane, then every org database, to this code's schema (each under its advisory lock, so two
 * runs do not race), then the bootstrap token on the first run. Idempotent.
 */
export async function migrateInstallation(config: AppConfig): Promise<MigrationResult> {
  const controlPlane = await new SchemaService(config).migrateControlPlane();
  // Org migrations unwrap keys: with a master key that does not open them, stop before any.
  await assertLocalMasterKeyOpensStore(config);
  const app = await NestFactory.createApplicationContext(MigrateModule.register(config), { logger: false });
  try {
    const orgs = await app.get(OrgRegistry).list();
    await app.get(OrgProvisioner).migrateAll(orgs);
    const bootstrapTokenFile = await app.get(PlatformTokensService).bootstrap();
    return { controlPlane, organizations: orgs.length, ...(bootstrapTokenFile && { bootstrapTokenFile }) };
  } finally {
    await app.close();
  }
}
