import { AppConfig, ConfigError, loadConfig, OwnerCredentials } from '@coffer/config';
import { captureError, flushErrorTracking, initErrorTracking } from '@coffer/logging';
import { assertLocalMasterKeyOpensStore, masterKeyMismatchIn, masterKeyMismatchLine } from './kms-provider.factory';

/**
 * The main() of a long-running process (api, worker, provisioner): the configuration, with or
 * without the owner's credentials as the process must have them, error tracking, the master-key
 * check, then `start`. A configuration it refuses (the owner's credentials where they do not
 * belong, an app role that could rewrite the audit trail, a sizing that does not fit) or data it
 * cannot decrypt ends it with one plain message and exit 78 (EX_CONFIG); anything else with its
 * stack, an error report (SENTRY_DSN), and 1.
 */
export function runService(service: string, owner: OwnerCredentials, start: (config: AppConfig) => Promise<unknown>): void {
  let config: AppConfig | undefined;
  const main = async () => {
    config = loadConfig(process.env, owner);
    initErrorTracking(config, service);
    // Data this process could not decrypt (another installation's database, a replaced master key): stop now.
    await assertLocalMasterKeyOpensStore(config);
    await start(config);
  };
  main().catch(async (error) => {
    const mismatch = config && masterKeyMismatchIn(error);
    if (mismatch) console.error(masterKeyMismatchLine(service, mismatch, config!));
    else if (error instanceof ConfigError) console.error(error.message);
    else {
      // An operator's mistake (above) is theirs to read; this one is ours to hear about.
      console.error(`${service} failed to start: ${error?.stack ?? error}`);
      captureError(error, { phase: 'start' });
      await flushErrorTracking();
      process.exit(1);
    }
    process.exit(78);
  });
}
