import 'reflect-metadata';
process.env.COFFER_SERVICE ??= 'api';
import { AppConfig, ConfigError, loadConfig } from '@coffer/config';
import { assertLocalMasterKeyOpensStore, masterKeyMismatchIn, masterKeyMismatchLine } from '@coffer/kms';
import { LOGGER, Logger } from '@coffer/logging';
import { PlainHttpListener } from '@coffer/tls';
import { createApi } from './bootstrap';

let config: AppConfig | undefined;

async function main() {
  config = loadConfig();
  // Data this process could not decrypt (another installation's database, a replaced master key): stop now.
  await assertLocalMasterKeyOpensStore(config);
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
}

main().catch((error) => {
  // Configuration problems are listed plainly, data this installation cannot read in one line
  // (exit 78, EX_CONFIG); anything else is a start-up failure.
  const mismatch = config && masterKeyMismatchIn(error);
  if (mismatch) {
    console.error(masterKeyMismatchLine('api', mismatch, config!));
    process.exit(78);
  }
  console.error(error instanceof ConfigError ? error.message : `api failed to start: ${error?.stack ?? error}`);
  process.exit(1);
});
