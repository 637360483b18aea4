import { existsSync } from 'node:fs';
import { healthStatus, openBaoClient, readKeys, renewSecretId, renewToken, unsealWith } from './compose-init';

/**
 * `coffer unseal [--watch]`: the compose deployment's unsealer (docs/adr/0011-unattended-restart.md).
 * Docker restarts OpenBao after a host reboot, sealed, and runs no one-shot (`init` is
 * `restart: "no"`); this service is `restart: unless-stopped`, so it comes back too and:
 *
 * - every COFFER_UNSEAL_INTERVAL_MS (5 s) reads `sys/health`; sealed, it submits the unseal share
 *   of COFFER_INIT_OPENBAO_KEYS_FILE, the file `coffer init` wrote;
 * - once unsealed, and then every COFFER_UNSEAL_UPKEEP_MS (1 h): renews the scoped init token (a
 *   periodic token, lapsing after 30 days without renewal) and, once the AppRole secret id in
 *   KMS_VAULT_SECRET_ID_FILE is past half its TTL, issues the next one there. The services read
 *   that file at every login, so they pick it up without a restart.
 *
 * Without `--watch`, one pass and exit. It prints what it did, never a key, token or secret id.
 */
export interface UnsealerOptions {
  address: string;
  keysFile: string;
  /** Where the AppRole secret id is kept fresh; none: secret ids are not its business. */
  secretIdFile?: string;
  log: (line: string) => void;
  /** Between two upkeeps (init token renewal, secret id check). */
  upkeepMs?: number;
}

export type UnsealerState = 'unreachable' | 'uninitialized' | 'sealed' | 'unsealed' | 'active';

export class Unsealer {
  private nextUpkeep = 0;
  private lastNotice = '';

  constructor(private readonly options: UnsealerOptions) {}

  /** One look at OpenBao, and what it called for. Never throws: a failure is logged and retried next time. */
  async tick(): Promise<UnsealerState> {
    const { address, keysFile } = this.options;
    const bao = openBaoClient(address);
    const status = await healthStatus(bao);
    if (status === 0 || status === -1) return this.notice('unreachable', `openbao at ${address} is not answering; waiting`);
    if (status === 501) return this.notice('uninitialized', 'openbao is not initialized: `coffer init` does that; waiting');
    try {
      if (status === 503) {
        if (!existsSync(keysFile)) return this.notice('sealed', `openbao is sealed and ${keysFile} is absent (kept off the host): unseal it by hand`);
        await unsealWith(bao, readKeys(keysFile));
        this.nextUpkeep = 0;
        this.lastNotice = '';
        this.options.log('openbao was sealed: unsealed with the init key share');
        return 'unsealed';
      }
      if (Date.now() >= this.nextUpkeep) {
        await this.upkeep();
        this.nextUpkeep = Date.now() + (this.options.upkeepMs ?? 3_600_000);
      }
      this.lastNotice = '';
      return 'active';
    } catch (error) {
      return this.notice(status === 503 ? 'sealed' : 'active', `unsealer: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** tick() every intervalMs until the signal aborts. */
  async watch(intervalMs: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.tick();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, intervalMs);
        signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
      });
    }
  }

  private async upkeep(): Promise<void> {
    const { address, keysFile, secretIdFile, log } = this.options;
    if (!existsSync(keysFile)) return;
    const keys = readKeys(keysFile);
    // Until the first init has swapped the root token for the scoped one, init does the upkeep.
    if (!keys.initToken) return;
    if (!(await renewToken(address, keys.initToken))) {
      throw new Error('the init token has lapsed: generate a root token and run init with COFFER_INIT_ROOT_TOKEN (docs/kms.md)');
    }
    if (secretIdFile && (await renewSecretId(openBaoClient(address, keys.initToken), secretIdFile, { force: false }))) {
      log(`approle secret id renewed in ${secretIdFile}`);
    }
  }

  /** Logs a line once until the state changes, so a long wait does not flood the log. */
  private notice(state: UnsealerState, line: string): UnsealerState {
    if (line !== this.lastNotice) this.options.log(line);
    this.lastNotice = line;
    return state;
  }
}

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const log = (line: string) => console.log(`[unseal] ${line}`);
  const address = env.KMS_VAULT_ADDR;
  if (!address) throw new Error('KMS_VAULT_ADDR is required');
  const unsealer = new Unsealer({
    address,
    keysFile: env.COFFER_INIT_OPENBAO_KEYS_FILE || '/var/lib/coffer-init/openbao-keys.json',
    secretIdFile: env.KMS_VAULT_SECRET_ID_FILE || undefined,
    upkeepMs: Number(env.COFFER_UNSEAL_UPKEEP_MS) || undefined,
    log,
  });
  if (!argv.includes('--watch')) {
    const state = await unsealer.tick();
    return state === 'active' || state === 'unsealed' ? 0 : 1;
  }
  const stop = new AbortController();
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => stop.abort());
  log(`watching ${address}`);
  await unsealer.watch(Number(env.COFFER_UNSEAL_INTERVAL_MS) || 5000, stop.signal);
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2), process.env).then(
    (code) => process.exit(code),
    (error) => {
      console.error(`unseal failed: ${error?.message ?? error}`);
      process.exit(1);
    },
  );
}
