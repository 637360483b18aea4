export * from './alerts.service';
export * from './alerts.module';
