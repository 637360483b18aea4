export * from './metrics.service';
export * from './metrics.module';
export * from './alert-checks.service';
export * from './worker-metrics.service';
export * from './plain-listener';
