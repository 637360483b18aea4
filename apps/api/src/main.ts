import 'reflect-metadata';
process.env.COFFER_SERVICE ??= 'api';
import { ConfigError, loadConfig } from '@coffer/config';
import { LOGGER, Logger } from '@coffer/logging';
import { createApi } from './bootstrap';

async function main() {
  const config = loadConfig();
  const app = await createApi(config);
  await app.listen({ host: config.HTTP_HOST, port: config.HTTP_PORT });
  app.get<Logger>(LOGGER).info({ url: await app.getUrl() }, 'api listening');
}

main().catch((error) => {
  // Configuration problems are listed plainly; anything else is a start-up failure.
  console.error(error instanceof ConfigError ? error.message : `api failed to start: ${error?.stack ?? error}`);
  process.exit(1);
});
