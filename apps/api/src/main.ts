import 'reflect-metadata';
process.env.COFFER_SERVICE ??= 'api';
import { runService } from '@coffer/kms';
import { LOGGER, Logger } from '@coffer/logging';
import { PlainHttpListener } from '@coffer/tls';
import { createApi } from './bootstrap';

runService('api', 'refused', async (config) => {
  const app = await createApi(config);
  const logger = app.get<Logger>(LOGGER);
  const tls = config.TLS_MODE !== 'off';
  await app.listen({ host: config.HTTP_HOST, port: tls ? config.HTTPS_PORT : config.HTTP_PORT });
  // getUrl() says http: Nest only knows of HTTPS given through its own httpsOptions.
  logger.info({ url: (await app.getUrl()).replace(/^http:/, tls ? 'https:' : 'http:') }, 'api listening');
  if (tls) {
    const url = await app.get(PlainHttpListener).listen(config.HTTP_HOST, config.HTTP_PORT);
    logger.info({ url }, 'plain http listening (acme challenges, redirects to https)');
  }
});
