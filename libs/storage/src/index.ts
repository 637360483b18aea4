export * from './storage-driver';
export * from './filesystem.driver';
export * from './s3.driver';
export * from './sealed-object';
export * from './storage.module';
