export * from './kms-provider';
export * from './kms-names';
export * from './local-kms.provider';
export * from './vault-kms.provider';
export * from './data-key-cache';
export * from './kms-provider.factory';
export * from './kms.module';
export * from './run-service';
