import { DynamicModule, Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { AuditModule } from '@coffer/audit';
import { AppConfig, ConfigModule } from '@coffer/config';
import { DatabaseModule } from '@coffer/database';
import { JobsModule, JobWorkers } from '@coffer/jobs';
import { KeysModule } from '@coffer/keys';
import { KmsModule } from '@coffer/kms';
import { AlertChecksModule } from '@coffer/metrics';
import { LoggingModule } from '@coffer/logging';
import { OrgsModule } from '@coffer/orgs';
import { PackagesModule } from '@coffer/packages';
import { SpoolModule } from '@coffer/spool';
import { CertificatesModule } from '@coffer/tls';
import { TenancyModule } from '@coffer/tenancy';
import { AlertChecksProcessor } from './processors/alert-checks.processor';
import { AuditCheckpointProcessor } from './processors/audit-checkpoint.processor';
import { AuditDeliveryProcessor } from './processors/audit-delivery.processor';
import { ExpireApiKeysProcessor } from './processors/expire-api-keys.processor';
import { RewrapKeysProcessor } from './processors/rewrap-keys.processor';
import { RotateKeyProcessor } from './processors/rotate-key.processor';
import { RenewCertificateProcessor } from './processors/renew-certificate.processor';
import { AlertChecksSchedule } from './schedules/alert-checks.schedule';
import { SweepPackagesProcessor } from './processors/sweep-packages.processor';
import { AuditCheckpointSchedule } from './schedules/audit-checkpoint.schedule';
import { AuditDeliverySchedule } from './schedules/audit-delivery.schedule';
import { CertificateRenewalSchedule } from './schedules/certificate-renewal.schedule';
import { ExpireApiKeysSchedule } from './schedules/expire-api-keys.schedule';
import { KeyRotationSchedule } from './schedules/key-rotation.schedule';
import { SweepPackagesSchedule } from './schedules/sweep-packages.schedule';
import { FlushSpoolProcessor } from './processors/flush-spool.processor';
import { FlushSpoolSchedule } from './schedules/flush-spool.schedule';

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
        CertificatesModule,
        PackagesModule,
        SpoolModule,
        DiscoveryModule,
        ScheduleModule.forRoot(),
      ],
      providers: [
        JobWorkers,
        ExpireApiKeysProcessor,
        ExpireApiKeysSchedule,
        AuditCheckpointProcessor,
        AuditCheckpointSchedule,
        AuditDeliveryProcessor,
        AuditDeliverySchedule,
        AlertChecksProcessor,
        AlertChecksSchedule,
        RotateKeyProcessor,
        RewrapKeysProcessor,
        KeyRotationSchedule,
        RenewCertificateProcessor,
        CertificateRenewalSchedule,
        SweepPackagesProcessor,
        SweepPackagesSchedule,
        FlushSpoolProcessor,
        FlushSpoolSchedule,
      ],
    };
  }
}
