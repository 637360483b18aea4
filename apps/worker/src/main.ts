import 'reflect-metadata';
process.env.COFFER_SERVICE ??= 'worker';
import { ConfigError, loadConfig } from '@coffer/config';
import { createWorker } from './bootstrap';

createWorker(loadConfig()).catch((error) => {
  console.error(error instanceof ConfigError ? error.message : `worker failed to start: ${error?.stack ?? error}`);
  process.exit(1);
});
