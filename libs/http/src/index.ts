export * from './errors';
export * from './egress';
export * from './zod-validation.pipe';
export * from './http-setup';
export * from './openapi';
export * from './request-checks';
