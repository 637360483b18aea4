export * from './kms-provider';
