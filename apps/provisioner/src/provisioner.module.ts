import { DynamicModule, Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { AuditModule } from '@coffer/audit';
import { AppConfig, ConfigModule } from '@coffer/config';
import { DatabaseModule } from '@coffer/database';
import { CONSUMED_QUEUES, JobScheduler, JobsModule, JobWorkers } from '@coffer/jobs';
import { KmsModule } from '@coffer/kms';
import { LoggingModule } from '@coffer/logging';
import { OrgProvisioningModule } from '@coffer/orgs';
import { TenancyModule } from '@coffer/tenancy';
import { ProvisionOrgProcessor } from './provision-org.processor';

/** The process that holds the owner's credentials: it consumes the `provisioning` queue, nothing else. */
@Module({})
export class ProvisionerModule {
  static register(config: AppConfig): DynamicModule {
    return {
      module: ProvisionerModule,
      imports: [
        ConfigModule.forRoot(config),
        LoggingModule,
        DatabaseModule,
        TenancyModule,
        KmsModule,
        AuditModule,
        JobsModule,
        OrgProvisioningModule,
        DiscoveryModule,
        ScheduleModule.forRoot(),
      ],
      providers: [JobWorkers, JobScheduler, { provide: CONSUMED_QUEUES, useValue: ['provisioning'] }, ProvisionOrgProcessor],
    };
  }
}
