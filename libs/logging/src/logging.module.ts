import { Global, Module } from '@nestjs/common';
import { Logger } from 'pino';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { createLogger } from './logger';

export const LOGGER = Symbol('LOGGER');
export type { Logger };

@Global()
@Module({
  providers: [
    { provide: LOGGER, inject: [APP_CONFIG], useFactory: (config: AppConfig) => createLogger(config.LOG_LEVEL) },
  ],
  exports: [LOGGER],
})
export class LoggingModule {}
