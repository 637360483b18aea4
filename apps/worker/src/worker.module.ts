import { DynamicModule, Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { AuditModule } from '@coffer/audit';
import { AppConfig, ConfigModule } from '@coffer/config';
import { DatabaseModule } from '@coffer/database';
import { CONSUMED_QUEUES, JobScheduler, JobsModule, JobWorkers } from '@coffer/jobs';
import { KeysModule } from '@coffer/keys';
import { KmsModule } from '@coffer/kms';
import { AlertChecksModule, WorkerMetricsModule } from '@coffer/metrics';
import { LoggingModule } from '@coffer/logging';
import { OrgsModule } from '@coffer/orgs';
import { PackagesModule } from '@coffer/packages';
import { SpoolModule } from '@coffer/spool';
import { CertificatesModule } from '@coffer/tls';
import { TenancyModule } from '@coffer/tenancy';
import { AlertChecksProcessor } from './processors/alert-checks.processor';
import { AuditCheckpointProcessor } from './processors/audit-checkpoint.processor';
import { AuditDeliveryProcessor, FindAuditDeliveriesProcessor } from './processors/audit-delivery.processor';
import { ExpireApiKeysProcessor, FindExpiredApiKeysProcessor } from './processors/expire-api-keys.processor';
import { FindSpoolFlushesProcessor, FlushSpoolProcessor } from './processors/flush-spool.processor';
import { FindCertificateRenewalsProcessor, RenewCertificateProcessor } from './processors/renew-certificate.processor';
import { RewrapKeysProcessor } from './processors/rewrap-keys.processor';
import { FindKeyRotationsProcessor, RotateKeyProcessor } from './processors/rotate-key.processor';
import { SweepPackagesProcessor } from './processors/sweep-packages.processor';

@Module({})
export class WorkerModule {
  static register(config: AppConfig): DynamicModule {
    return {
      module: WorkerModule,
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
        AlertChecksModule,
        WorkerMetricsModule,
        CertificatesModule,
        PackagesModule,
        SpoolModule,
        DiscoveryModule,
        ScheduleModule.forRoot(),
      ],
      providers: [
        JobWorkers,
        JobScheduler,
        { provide: CONSUMED_QUEUES, useValue: ['maintenance'] },
        // One handler per job of the registry (libs/jobs), which also says what is scheduled.
        ExpireApiKeysProcessor,
        FindExpiredApiKeysProcessor,
        AuditCheckpointProcessor,
        AuditDeliveryProcessor,
        FindAuditDeliveriesProcessor,
        AlertChecksProcessor,
        RotateKeyProcessor,
        RewrapKeysProcessor,
        FindKeyRotationsProcessor,
        RenewCertificateProcessor,
        FindCertificateRenewalsProcessor,
        SweepPackagesProcessor,
        FlushSpoolProcessor,
        FindSpoolFlushesProcessor,
      ],
    };
  }
}
