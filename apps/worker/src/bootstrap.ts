import { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppConfig } from '@coffer/config';
import { checkAppRole, checkConnectionSizing, SchemaService } from '@coffer/database';
import { LOGGER, Logger, NestPinoLogger } from '@coffer/logging';
import { WorkerModule } from './worker.module';

/**
 * The worker never migrates: it waits until `coffer migrate` has brought the schema to its
 * version. Like the API, it refuses a database role that could rewrite the audit trail.
 */
export async function createWorker(config: AppConfig, schemaWaitMs = 120_000): Promise<INestApplicationContext> {
  await new SchemaService(config).waitForControlPlane(schemaWaitMs);
  await checkAppRole(config);
  await checkConnectionSizing(config);
  const app = await NestFactory.createApplicationContext(WorkerModule.register(config), { bufferLogs: true, abortOnError: false });
  const logger = app.get<Logger>(LOGGER);
  app.useLogger(new NestPinoLogger(logger));
  app.enableShutdownHooks();
  await app.init();
  logger.info('worker started');
  return app;
}
