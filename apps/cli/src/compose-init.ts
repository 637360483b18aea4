import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import NodeVault from 'node-vault';
import { AppConfig, ConfigError, loadConfig } from '@coffer/config';
import { ensureRoles, roleOf, withClient } from '@coffer/database';

/**
 * `coffer init`: the compose deployment's one-shot, run by `docker compose up` before the API
 * and the worker. Idempotent, so it runs at every `up` (it also unseals OpenBao after a restart):
 *
 * 1. creates (or corrects) the owner and app roles with the passwords in DATABASE_OWNER_URL and
 *    DATABASE_APP_URL, through a superuser connection (COFFER_INIT_POSTGRES_URL) that only this
 *    service holds;
 * 2. with KMS_PROVIDER=vault: initializes OpenBao (or Vault) once, keeping the unseal key and
 *    root token in COFFER_INIT_OPENBAO_KEYS_FILE, unseals it, enables transit, writes Coffer's
 *    least-privilege policy and registers the AppRole whose role and secret ids are in
 *    KMS_VAULT_ROLE_ID / KMS_VAULT_SECRET_ID.
 *
 * It prints what it did, never a password, key or token.
 */

export interface DatabaseRolesInit {
  DATABASE_OWNER_URL: string;
  DATABASE_APP_URL: string;
}

export async function initDatabaseRoles(adminUrl: string, config: DatabaseRolesInit): Promise<{ owner: string; app: string }> {
  const role = (url: string) => ({ name: roleOf(url), password: decodeURIComponent(new URL(url).password) });
  const owner = role(config.DATABASE_OWNER_URL);
  const app = role(config.DATABASE_APP_URL);
  if (owner.name === app.name) throw new Error('DATABASE_OWNER_URL and DATABASE_APP_URL must name two different roles');
  // ensureRoles makes both roles NOSUPERUSER: pointed at the superuser, it would demote it.
  if ([owner.name, app.name].includes(roleOf(adminUrl))) {
    throw new Error('the owner and app roles must not be the superuser of COFFER_INIT_POSTGRES_URL');
  }
  if (!owner.password || !app.password) throw new Error('DATABASE_OWNER_URL and DATABASE_APP_URL must carry passwords');
  await withClient(adminUrl, (admin) => ensureRoles(admin, { owner, app }));
  return { owner: owner.name, app: app.name };
}

/**
 * What Coffer does with transit (libs/kms/src/vault-kms.provider.ts) and nothing more. `+` is
 * one path segment, so `keys/+` does not reach `keys/<name>/trim` or `export/`, and no path
 * allows delete, backup or restore; `config` may only move min_decryption_version.
 */
export function cofferTransitPolicy(mount: string): string {
  const path = (p: string, body = '') => `path "${mount}/${p}" {\n  capabilities = ["update"]${body}\n}\n`;
  return [
    `path "${mount}/keys/+" {\n  capabilities = ["create", "read", "update"]\n  allowed_parameters = { "type" = ["aes256-gcm96", "ed25519"] }\n}\n`,
    path('keys/+/rotate'),
    path('keys/+/config', '\n  allowed_parameters = { "min_decryption_version" = [] }'),
    path('datakey/plaintext/+'),
    path('encrypt/+'),
    path('decrypt/+'),
    path('rewrap/+'),
    path('sign/+'),
    path('verify/+'),
  ].join('\n');
}

export interface OpenBaoInit {
  address: string;
  mount: string;
  keysFile: string;
  roleId: string;
  secretId: string;
  log: (line: string) => void;
}

interface BaoKeys {
  unsealKeys: string[];
  rootToken: string;
}

const POLICY = 'coffer';
const ROLE = 'coffer';

export async function initOpenBao(options: OpenBaoInit): Promise<void> {
  const { address, mount, keysFile, log } = options;
  const bao = openBaoClient(address);

  await waitForOpenBao(bao, address);
  const initStatus = await step(bao.initialized(), 'read the init status');
  let keys: BaoKeys;
  if (!initStatus.initialized) {
    if (existsSync(keysFile) && readFileSync(keysFile, 'utf8').trim()) {
      throw new Error(`${keysFile} holds keys but OpenBao is not initialized: was its data volume lost? Move the file away to start over`);
    }
    // Prove the keys file can be written before asking for keys that exist only once.
    mkdirSync(dirname(keysFile), { recursive: true, mode: 0o700 });
    writeFileSync(keysFile, '', { mode: 0o600 });
    const answer = await step(bao.init({ secret_shares: 1, secret_threshold: 1 }), 'initialize');
    keys = { unsealKeys: answer.keys_base64, rootToken: answer.root_token };
    writeDurably(keysFile, JSON.stringify(keys));
    log(`openbao initialized; unseal key and root token in ${keysFile}: back it up apart from the data (docs/kms.md)`);
  } else if (!existsSync(keysFile) && !(await step(bao.status(), 'read the seal status')).sealed) {
    // The hardened setup (docs/kms.md): the keys live off the host and the operator unsealed
    // OpenBao by hand. Transit, policy and AppRole were set up at install; nothing to do.
    log(`openbao is unsealed and ${keysFile} is absent (kept off the host): leaving OpenBao as it is`);
    return;
  } else {
    keys = readKeys(keysFile);
  }

  const seal = await step(bao.status(), 'read the seal status');
  if (seal.sealed) {
    for (const key of keys.unsealKeys) {
      const answer = await step(bao.unseal({ key }), 'unseal');
      if (!answer.sealed) break;
    }
    log('openbao unsealed');
  }
  await waitForOpenBao(bao, address, true);

  const root = openBaoClient(address, keys.rootToken);
  const mounts = await step(root.mounts(), 'list mounts');
  if (!(mounts.data ?? mounts)[`${mount}/`]) {
    await step(root.write(`sys/mounts/${mount}`, { type: 'transit' }), 'enable transit');
    log(`transit enabled at ${mount}/`);
  }
  await step(root.write(`sys/policies/acl/${POLICY}`, { policy: cofferTransitPolicy(mount) }), 'write policy');
  const auths = await step(root.auths(), 'list auth methods');
  if (!(auths.data ?? auths)['approle/']) {
    await step(root.write('sys/auth/approle', { type: 'approle' }), 'enable approle');
  }
  // Short-lived tokens; the provider logs in again when one is refused.
  await step(
    root.write(`auth/approle/role/${ROLE}`, { token_policies: [POLICY], token_ttl: '1h', token_max_ttl: '4h', secret_id_ttl: 0, secret_id_num_uses: 0 }),
    'write approle',
  );
  await step(root.write(`auth/approle/role/${ROLE}/role-id`, { role_id: options.roleId }), 'set role id');
  // An unknown secret id is a 204 with no body, or a refusal: either way it is registered next.
  const lookup = await root.write(`auth/approle/role/${ROLE}/secret-id/lookup`, { secret_id: options.secretId }).catch((error: unknown) => {
    if (statusOf(error) === undefined) throw refusal(error, 'look up the secret id');
    return undefined;
  });
  if (!lookup?.data) {
    await step(root.write(`auth/approle/role/${ROLE}/custom-secret-id`, { secret_id: options.secretId }), 'set secret id');
  }
  log(`openbao ready: transit at ${mount}/, policy ${POLICY}, approle ${ROLE}`);
}

/**
 * The unseal key and root token exist once, at this moment: written to a temporary file,
 * flushed, renamed into place and the directory flushed, so a crash cannot leave an empty file
 * behind an initialized OpenBao.
 */
function writeDurably(path: string, content: string): void {
  const temp = `${path}.tmp`;
  const fd = openSync(temp, 'w', 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path);
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

function readKeys(keysFile: string): BaoKeys {
  let keys: Partial<BaoKeys>;
  try {
    keys = JSON.parse(readFileSync(keysFile, 'utf8'));
  } catch {
    throw new Error(`OpenBao is initialized but ${keysFile} is missing or unreadable: restore it from the backup (docs/kms.md)`);
  }
  if (!Array.isArray(keys.unsealKeys) || typeof keys.rootToken !== 'string') throw new Error(`${keysFile} is not an OpenBao keys file`);
  return keys as BaoKeys;
}

/**
 * A node-vault client for OpenBao, built as the Vault KMS provider builds its own
 * (libs/kms/src/vault-kms.provider.ts): GET ?list=true instead of the LIST verb, TLS always
 * verified, and none of node-vault's environment fallbacks (VAULT_TOKEN, VAULT_PREFIX,
 * VAULT_NAMESPACE, VAULT_SKIP_VERIFY). Without a token, no X-Vault-Token header is sent.
 */
function openBaoClient(address: string, token?: string): NodeVault.client {
  const settings: NodeVault.VaultOptions & { rpDefaults: { strictSSL: boolean } } = {
    endpoint: address,
    token,
    noCustomHTTPVerbs: true,
    requestOptions: { timeout: 10_000 },
    rpDefaults: { strictSSL: true },
  };
  const client = NodeVault(settings);
  Object.assign(client, { token: token ?? '', pathPrefix: '', namespace: undefined });
  return client;
}

function statusOf(error: unknown): number | undefined {
  const response = (error as { response?: { statusCode?: unknown } } | undefined)?.response;
  return typeof response?.statusCode === 'number' ? response.statusCode : undefined;
}

/** The answer of a 2xx, or an error naming the step. */
function step<T = any>(pending: Promise<T>, what: string): Promise<T> {
  return pending.catch((error: unknown) => Promise.reject(refusal(error, what)));
}

/**
 * An error naming the step and OpenBao's messages (which hold no secrets). node-vault's and
 * axios's own errors keep the request, root token included, so they are not passed on.
 */
function refusal(error: unknown, what: string): Error {
  const status = statusOf(error);
  if (status === undefined) return new Error(`OpenBao did not answer to ${what}: ${error instanceof Error ? error.message : String(error)}`);
  const errors = (error as { response: { body?: { errors?: string[] } } }).response.body?.errors ?? [];
  return new Error(`OpenBao refused to ${what} (${status}): ${errors.join('; ')}`);
}

/**
 * The status sys/health answers with its default codes, from its body: node-vault resolves the
 * body whatever the status. 0 when nothing answers, -1 when what answers is not OpenBao.
 */
async function healthStatus(bao: NodeVault.client): Promise<number> {
  const body = await bao.health({ requestOptions: { timeout: 5000 } }).catch(() => undefined);
  if (!body || typeof body !== 'object' || typeof body.initialized !== 'boolean') return body === undefined ? 0 : -1;
  return !body.initialized ? 501 : body.sealed ? 503 : body.standby ? 429 : 200;
}

/** Until sys/health answers (any status), or until it is active and unsealed. */
async function waitForOpenBao(bao: NodeVault.client, address: string, unsealed = false, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await healthStatus(bao);
    if (unsealed ? status === 200 : status !== 0) return;
    if (Date.now() > deadline) {
      const seen = status === 0 ? 'no answer' : status === -1 ? 'not an OpenBao answer' : status;
      throw new Error(`OpenBao at ${address} is not ${unsealed ? 'active' : 'answering'} (health ${seen})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function main(env: NodeJS.ProcessEnv): Promise<void> {
  const log = (line: string) => console.log(`[init] ${line}`);
  const config: AppConfig = loadConfig(env);
  const adminUrl = env.COFFER_INIT_POSTGRES_URL;
  if (!adminUrl) throw new Error('COFFER_INIT_POSTGRES_URL (a superuser connection) is required');
  const roles = await initDatabaseRoles(adminUrl, config);
  log(`database roles ready [owner=${roles.owner}] [app=${roles.app}]`);

  if (config.KMS_PROVIDER !== 'vault') return;
  const { KMS_VAULT_ADDR: address, KMS_VAULT_ROLE_ID: roleId, KMS_VAULT_SECRET_ID: secretId } = config;
  if (!address || !roleId || !secretId) throw new Error('KMS_PROVIDER=vault needs KMS_VAULT_ADDR, KMS_VAULT_ROLE_ID and KMS_VAULT_SECRET_ID');
  await initOpenBao({
    address,
    mount: config.KMS_VAULT_MOUNT,
    keysFile: env.COFFER_INIT_OPENBAO_KEYS_FILE ?? '/var/lib/coffer-init/openbao-keys.json',
    roleId,
    secretId,
    log,
  });
}

if (require.main === module) {
  main(process.env).then(
    () => process.exit(0),
    (error) => {
      console.error(error instanceof ConfigError ? error.message : `init failed: ${error?.message ?? error}`);
      process.exit(1);
    },
  );
}
