import { Global, Module } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { FilesystemStorageDriver } from './filesystem.driver';
import { S3StorageDriver } from './s3.driver';
import { StorageDriver } from './storage-driver';

/** The process's one storage driver (STORAGE_DRIVER). */
export const STORAGE = Symbol('STORAGE');

export function createStorageDriver(config: AppConfig): StorageDriver {
  if (config.STORAGE_DRIVER === 's3') {
    return new S3StorageDriver({
      endpoint: config.S3_ENDPOINT!,
      bucket: config.S3_BUCKET!,
      accessKey: config.S3_ACCESS_KEY!,
      secretKey: config.S3_SECRET_KEY!,
      region: config.S3_REGION,
    });
  }
  return new FilesystemStorageDriver(config.STORAGE_DIR);
}

@Global()
@Module({
  providers: [
    {
      provide: STORAGE,
      inject: [APP_CONFIG],
      useFactory: async (config: AppConfig) => {
        const driver = createStorageDriver(config);
        await driver.ready();
        return driver;
      },
    },
  ],
  exports: [STORAGE],
})
export class StorageModule {}
