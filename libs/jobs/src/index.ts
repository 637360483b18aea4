export * from './job-registry';
export * from './redis';
export * from './jobs.service';
export * from './job-scheduler';
export * from './job-workers';
export * from './jobs.module';
