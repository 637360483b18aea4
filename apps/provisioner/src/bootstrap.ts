import { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppConfig } from '@coffer/config';
import { SchemaService } from '@coffer/database';
import { LOGGER, Logger, NestPinoLogger } from '@coffer/logging';
import { ProvisionerModule } from './provisioner.module';

/** The provisioner waits for `coffer migrate` like the API and the worker, then consumes its queue. */
export async function createProvisioner(config: AppConfig, schemaWaitMs = 120_000): Promise<INestApplicationContext> {
  await new SchemaService(config).waitForControlPlane(schemaWaitMs);
  const app = await NestFactory.createApplicationContext(ProvisionerModule.register(config), { bufferLogs: true, abortOnError: false });
  const logger = app.get<Logger>(LOGGER);
  app.useLogger(new NestPinoLogger(logger));
  app.enableShutdownHooks();
  await app.init();
  logger.info('provisioner started');
  return app;
}
