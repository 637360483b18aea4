export * from './user';
export * from './users.service';
export * from './api-keys.service';
export * from './users.module';
export * from './users.dto';
