export * from './encryption-status.service';
export * from './encryption.module';
export * from './encryption.dto';
