import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { AppConfig } from '@coffer/config';
import { checkAppRole, checkConnectionSizing, SchemaService } from '@coffer/database';
import { AllExceptionsFilter, fastifyOptions, installHttpHooks } from '@coffer/http';
import { LOGGER, Logger, NestPinoLogger } from '@coffer/logging';
import { MetricsService } from '@coffer/metrics';
import { installSecurityHeaders, SECURITY_HEADERS, TLS_SERVER_OPTIONS } from '@coffer/tls';
import { ApiModule } from './api.module';
import { OpenApiDocument } from './controllers/openapi.controller';
import { describeApi } from './openapi-document';

/**
 * Builds the API, ready to listen, once `coffer migrate` has brought the control plane to this
 * code's schema; the OpenAPI document comes from the code. Tests call this with their own
 * config; main.ts adds only listen() and signals. Unless TLS_MODE=off the server is HTTPS; its
 * certificate is loaded (TlsModule) before this returns. It refuses to start with a database
 * role that could rewrite the audit trail, or when the deployment's connection budgets could
 * exceed what the server allows.
 */
export async function createApi(config: AppConfig, schemaWaitMs = 120_000): Promise<NestFastifyApplication> {
  await new SchemaService(config).waitForControlPlane(schemaWaitMs);
  await checkAppRole(config);
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
  installHttpHooks(adapter.getInstance(), logger, { responseHeaders: tls ? SECURITY_HEADERS : {}, shutdownGraceMs: config.SHUTDOWN_GRACE_MS });
  app.get(MetricsService).install(adapter.getInstance());
  if (tls) installSecurityHeaders(adapter.getInstance());
  app.useGlobalFilters(new AllExceptionsFilter(logger));
  app.enableShutdownHooks();

  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Coffer API')
      .setDescription('Errors are `{"error":{"code","message","requestId"}}`; codes are stable and listed in the Error schema.')
      .setVersion('1')
      .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'coffer_key.… (org API key) or coffer_pat.… (platform admin)' })
      .build(),
  );
  app.get(OpenApiDocument).document = describeApi(document, config);

  await app.init();
  return app;
}
