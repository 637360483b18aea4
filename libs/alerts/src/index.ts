export * from './alert';
export * from './alert-state.repository';
export * from './alert-webhooks.repository';
export * from './alerts.service';
export * from './alerts.module';
