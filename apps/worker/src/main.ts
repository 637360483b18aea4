import 'reflect-metadata';
process.env.COFFER_SERVICE ??= 'worker';
import { AppConfig, ConfigError, loadConfig } from '@coffer/config';
import { assertLocalMasterKeyOpensStore, masterKeyMismatchIn, masterKeyMismatchLine } from '@coffer/kms';
import { createWorker } from './bootstrap';

let config: AppConfig | undefined;

async function main() {
  config = loadConfig();
  // Data this process could not decrypt (another installation's database, a replaced master key): stop now.
  await assertLocalMasterKeyOpensStore(config);
  await createWorker(config);
}

main().catch((error) => {
  const mismatch = config && masterKeyMismatchIn(error);
  if (mismatch) {
    console.error(masterKeyMismatchLine('worker', mismatch, config!));
    process.exit(78);
  }
  console.error(error instanceof ConfigError ? error.message : `worker failed to start: ${error?.stack ?? error}`);
  process.exit(1);
});
