export * from './spool-crypto';
export * from './spool.repository';
export * from './spool.service';
export * from './spool.module';
export * from './kms-probe';
