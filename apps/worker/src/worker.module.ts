import { DynamicModule, Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { AuditModule } from '@coffer/audit';
import { AppConfig, ConfigModule } from '@coffer/config';
import { DatabaseModule } from '@coffer/database';
import { JobsModule, JobWorkers } from '@coffer/jobs';
import { LoggingModule } from '@coffer/logging';
import { OrgsModule } from '@coffer/orgs';
import { ExpireApiKeysProcessor } from './processors/expire-api-keys.processor';
import { ExpireApiKeysSchedule } from './schedules/expire-api-keys.schedule';

@Module({})
export class WorkerModule {
  static register(config: AppConfig): DynamicModule {
    return {
      module: WorkerModule,
      imports: [
        ConfigModule.forRoot(config),
        LoggingModule,
        DatabaseModule,
        AuditModule,
        JobsModule,
        OrgsModule,
        DiscoveryModule,
        ScheduleModule.forRoot(),
      ],
      providers: [JobWorkers, ExpireApiKeysProcessor, ExpireApiKeysSchedule],
    };
  }
}
