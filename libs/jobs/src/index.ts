export * from './job-registry';
export * from './redis';
export * from './jobs.service';
export * from './job-workers';
export * from './jobs.module';
