import { Global, Module } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { DatabaseService } from '@coffer/database';
import { createKmsProvider } from './kms-provider.factory';

/** The process's one KMS provider (KMS_PROVIDER), behind the data-key cache. */
export const KMS = Symbol('KMS');

@Global()
@Module({
  providers: [
    {
      provide: KMS,
      inject: [APP_CONFIG, DatabaseService],
      useFactory: (config: AppConfig, db: DatabaseService) => createKmsProvider(config, db.control),
    },
  ],
  exports: [KMS],
})
export class KmsModule {}
