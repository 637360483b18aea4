export * from './principal';
export * from './access.decorators';
export * from './platform-tokens.service';
export * from './auth.guard';
export * from './auth.module';
export * from './request-audit';
export * from './audit.interceptor';
