import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { PlatformTokensService } from '@coffer/auth';
import { AppConfig } from '@coffer/config';
import { checkConnectionSizing, SchemaService } from '@coffer/database';
import { AllExceptionsFilter, ERROR_SCHEMA, fastifyOptions, installHttpHooks } from '@coffer/http';
import { LOGGER, Logger, NestPinoLogger } from '@coffer/logging';
import { MetricsService } from '@coffer/metrics';
import { OrgProvisioner } from '@coffer/orgs';
import { installSecurityHeaders, SECURITY_HEADERS, TLS_SERVER_OPTIONS } from '@coffer/tls';
import { OrgRegistry } from '@coffer/tenancy';
import { ApiModule } from './api.module';
import { OpenApiDocument } from './controllers/openapi.controller';

/**
 * Builds the API, ready to listen: migrations (control plane, then every org) under their
 * advisory locks, the bootstrap token on first start, the OpenAPI document from the code.
 * Tests call this with their own config; main.ts adds only listen() and signals. Unless
 * TLS_MODE=off the server is HTTPS; its certificate is loaded (TlsModule) before this returns.
 * It refuses to start when the deployment's connection budgets could exceed what the server
 * allows (checked once the control plane exists: the check connects to it as the app role).
 */
export async function createApi(config: AppConfig): Promise<NestFastifyApplication> {
  if (config.MIGRATE_ON_START) await new SchemaService(config).migrateControlPlane();
  await checkConnectionSizing(config);

  const tls = config.TLS_MODE !== 'off';
  const adapter = new FastifyAdapter({
    ...fastifyOptions({
      bodyLimit: config.HTTP_BODY_LIMIT_BYTES,
      trustedProxies: config.TRUSTED_PROXIES.split(',').map((s) => s.trim()).filter(Boolean),
    }),
    ...(tls && { https: TLS_SERVER_OPTIONS }),
  });
  const app = await NestFactory.create<NestFastifyApplication>(ApiModule.register(config), adapter, {
    bufferLogs: true,
    abortOnError: false,
    bodyParser: false,
  });
  const logger = app.get<Logger>(LOGGER);
  app.useLogger(new NestPinoLogger(logger));
  // The security headers also go on the answers Fastify's hooks never see (a URL it cannot
  // decode, a request Node cannot parse): every answer of this listener has them.
  installHttpHooks(adapter.getInstance(), logger, { responseHeaders: tls ? SECURITY_HEADERS : {} });
  app.get(MetricsService).install(adapter.getInstance());
  if (tls) installSecurityHeaders(adapter.getInstance());
  app.useGlobalFilters(new AllExceptionsFilter(logger));
  app.enableShutdownHooks();

  if (config.MIGRATE_ON_START) {
    await app.get(OrgProvisioner).migrateAll(await app.get(OrgRegistry).list());
    const tokenFile = await app.get(PlatformTokensService).bootstrap();
    if (tokenFile) {
      logger.warn({ path: tokenFile }, 'platform admin bootstrap token created; read it from this file once, store it safely, delete the file');
    }
  }

  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Coffer API')
      .setDescription('Errors are `{"error":{"code","message","requestId"}}`; codes are stable and listed in the Error schema.')
      .setVersion('1')
      .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'coffer_key.… (org API key) or coffer_pat.… (platform admin)' })
      .build(),
  );
  document.components = { ...document.components, schemas: { ...document.components?.schemas, Error: ERROR_SCHEMA as never } };
  app.get(OpenApiDocument).document = document;

  await app.init();
  return app;
}
