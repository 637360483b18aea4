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
 * 2. with KMS_PROVIDER=vault: initializes OpenBao (or Vault) once, keeping the unseal key in
 *    COFFER_INIT_OPENBAO_KEYS_FILE, unseals it, enables transit, writes Coffer's least-privilege
 *    policy (its own keys only), registers the AppRole (role id KMS_VAULT_ROLE_ID) and issues an
 *    expiring secret id into KMS_VAULT_SECRET_ID_FILE. The first run then swaps the root token for
 *    a scoped, periodic init token (kept in the keys file) and revokes the root token; later runs
 *    use the scoped token. The unsealer (compose-unseal.ts) keeps both the seal and the secret id
 *    going between runs (docs/adr/0011-unattended-restart.md).
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
 * What Coffer does with transit (libs/kms/src/vault-kms.provider.ts) and nothing more, on its own
 * keys only: every key Coffer names starts with `coffer-` (org, audit and spool keys), after
 * KMS_VAULT_KEY_PREFIX. A trailing `*` matches any suffix, `/trim` included, so the keys path
 * takes only the parameters Coffer sends (`type` at creation, `min_decryption_version` in
 * `config`): trim, export, deletion_allowed and the like are refused, and no path allows
 * delete, backup, restore or listing.
 */
export function cofferTransitPolicy(mount: string, keyPrefix = ''): string {
  const own = `${keyPrefix}coffer-*`;
  const path = (p: string) => `path "${mount}/${p}/${own}" {\n  capabilities = ["update"]\n}\n`;
  return [
    `path "${mount}/keys/${own}" {\n  capabilities = ["create", "read", "update"]\n` +
      `  allowed_parameters = { "type" = ["aes256-gcm96", "ed25519"], "min_decryption_version" = [] }\n}\n`,
    path('datakey/plaintext'),
    path('encrypt'),
    path('decrypt'),
    path('rewrap'),
    path('sign'),
    path('verify'),
  ].join('\n');
}

/**
 * What a later `coffer init` does once the root token is revoked, and the unsealer's upkeep:
 * enable the transit mount, write Coffer's policy (not this one), enable AppRole, manage the
 * `coffer` role and its secret ids. Nothing under transit's keys, no seal, no token creation.
 */
export function cofferInitPolicy(mount: string): string {
  const rule = (p: string, caps: string[]) => `path "${p}" {\n  capabilities = [${caps.map((c) => `"${c}"`).join(', ')}]\n}\n`;
  return [
    rule('sys/mounts', ['read']),
    rule(`sys/mounts/${mount}`, ['create', 'read', 'update']),
    rule('sys/auth', ['read']),
    rule('sys/auth/approle', ['create', 'update', 'sudo']),
    rule(`sys/policies/acl/${POLICY}`, ['create', 'read', 'update']),
    rule(`auth/approle/role/${ROLE}`, ['create', 'read', 'update']),
    rule(`auth/approle/role/${ROLE}/role-id`, ['read', 'update']),
    rule(`auth/approle/role/${ROLE}/secret-id`, ['update']),
    rule(`auth/approle/role/${ROLE}/secret-id/lookup`, ['update']),
    rule(`auth/approle/role/${ROLE}/secret-id/destroy`, ['update']),
  ].join('\n');
}

export interface OpenBaoInit {
  address: string;
  mount: string;
  /** KMS_VAULT_KEY_PREFIX: the policy covers `<prefix>coffer-*` only. */
  keyPrefix?: string;
  keysFile: string;
  roleId: string;
  /** Where the AppRole secret id goes (KMS_VAULT_SECRET_ID_FILE), renewed by the unsealer. */
  secretIdFile: string;
  /** A secret id an earlier version registered from .env (KMS_VAULT_SECRET_ID), never expiring: destroyed. */
  legacySecretId?: string;
  /** A root token the operator generated (`bao operator generate-root`) after the init token lapsed. */
  rootToken?: string;
  log: (line: string) => void;
}

/** The keys file: the unseal share and the scoped init token; a root token only until it is revoked. */
export interface BaoKeys {
  unsealKeys: string[];
  initToken?: string;
  rootToken?: string;
}

const POLICY = 'coffer';
const INIT_POLICY = 'coffer-init';
const ROLE = 'coffer';
/** The init token lives while renewed within this period (by every init and by the unsealer, daily). */
export const INIT_TOKEN_PERIOD = '720h';
/** An AppRole secret id expires after this; the unsealer issues the next one at half of it. */
export const SECRET_ID_TTL_SECONDS = 72 * 3600;

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
    log(`openbao initialized; unseal key in ${keysFile}: back it up apart from the data (docs/kms.md)`);
  } else if (!existsSync(keysFile) && !(await step(bao.status(), 'read the seal status')).sealed) {
    // The hardened setup (docs/kms.md): the keys live off the host and the operator unsealed
    // OpenBao by hand. Transit, policy and AppRole were set up at install; nothing to do.
    log(`openbao is unsealed and ${keysFile} is absent (kept off the host): leaving OpenBao as it is`);
    return;
  } else {
    keys = readKeys(keysFile);
  }

  if (await unsealWith(bao, keys)) log('openbao unsealed');
  await waitForOpenBao(bao, address, true);

  const root = options.rootToken ?? keys.rootToken;
  if (!root && !keys.initToken) throw new Error(`${keysFile} holds no token: generate a root token (docs/kms.md) and run init with COFFER_INIT_ROOT_TOKEN`);
  if (!root && !(await renewToken(address, keys.initToken!))) {
    throw new Error('the init token has lapsed (not renewed for 30 days): generate a root token (docs/kms.md) and run init with COFFER_INIT_ROOT_TOKEN');
  }
  const admin = openBaoClient(address, root ?? keys.initToken);
  const mounts = await step(admin.mounts(), 'list mounts');
  if (!(mounts.data ?? mounts)[`${mount}/`]) {
    await step(admin.write(`sys/mounts/${mount}`, { type: 'transit' }), 'enable transit');
    log(`transit enabled at ${mount}/`);
  }
  await step(admin.write(`sys/policies/acl/${POLICY}`, { policy: cofferTransitPolicy(mount, options.keyPrefix) }), 'write policy');
  if (root) await step(admin.write(`sys/policies/acl/${INIT_POLICY}`, { policy: cofferInitPolicy(mount) }), 'write the init policy');
  const auths = await step(admin.auths(), 'list auth methods');
  if (!(auths.data ?? auths)['approle/']) {
    await step(admin.write('sys/auth/approle', { type: 'approle' }), 'enable approle');
  }
  // Short-lived tokens, which the provider renews by logging in again; secret ids that expire.
  await step(
    admin.write(`auth/approle/role/${ROLE}`, {
      token_policies: [POLICY],
      token_ttl: '1h',
      token_max_ttl: '4h',
      secret_id_ttl: SECRET_ID_TTL_SECONDS,
      secret_id_num_uses: 0,
    }),
    'write approle',
  );
  await step(admin.write(`auth/approle/role/${ROLE}/role-id`, { role_id: options.roleId }), 'set role id');
  if (options.legacySecretId) {
    await step(admin.write(`auth/approle/role/${ROLE}/secret-id/destroy`, { secret_id: options.legacySecretId }), 'destroy the old secret id');
    log('the secret id of .env (KMS_VAULT_SECRET_ID, no expiry) is destroyed in OpenBao: remove it from .env');
  }
  if (await renewSecretId(admin, options.secretIdFile, { force: false })) log(`approle secret id issued to ${options.secretIdFile}`);

  if (root) {
    // The scoped token first, kept beside the unseal share; the root token goes last.
    if (!keys.initToken || !(await renewToken(address, keys.initToken))) {
      const created = await step(
        admin.write('auth/token/create', { policies: [INIT_POLICY], period: INIT_TOKEN_PERIOD, no_parent: true, display_name: 'coffer-init' }),
        'create the init token',
      );
      keys = { ...keys, initToken: created.auth.client_token };
      writeDurably(keysFile, JSON.stringify(keys));
    }
    await openBaoClient(address, root)
      .write('auth/token/revoke-self', {})
      .catch((error: unknown) => {
        // Already revoked (a crash after the revocation, before the file was rewritten): 403.
        if (statusOf(error) !== 403) throw refusal(error, 'revoke the root token');
      });
    const { rootToken: _revoked, ...kept } = keys;
    writeDurably(keysFile, JSON.stringify(kept));
    log('root token revoked; later inits use the scoped init token');
  }
  log(`openbao ready: transit at ${mount}/, policy ${POLICY}, approle ${ROLE}`);
}

/** Submits the unseal share while OpenBao is sealed. True when it was sealed. */
export async function unsealWith(bao: NodeVault.client, keys: BaoKeys): Promise<boolean> {
  const seal = await step(bao.status(), 'read the seal status');
  if (!seal.sealed) return false;
  for (const key of keys.unsealKeys) {
    const answer = await step(bao.unseal({ key }), 'unseal');
    if (!answer.sealed) break;
  }
  return true;
}

/** Renews a periodic token for its period. False when OpenBao refuses it (expired or revoked). */
export async function renewToken(address: string, token: string): Promise<boolean> {
  return openBaoClient(address, token)
    .write('auth/token/renew-self', {})
    .then(
      () => true,
      (error: unknown) => {
        if (statusOf(error) === 403) return false;
        throw refusal(error, 'renew the init token');
      },
    );
}

/**
 * Issues a new AppRole secret id into `file` when the one there is missing, unknown to OpenBao,
 * or past half its TTL (or always, with `force`). The old one keeps working until it expires, so
 * a service logged in with it is not cut off. The file is replaced atomically. True when issued.
 */
export async function renewSecretId(admin: NodeVault.client, file: string, { force }: { force: boolean }): Promise<boolean> {
  const current = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
  if (current && !force) {
    const lookup = await admin.write(`auth/approle/role/${ROLE}/secret-id/lookup`, { secret_id: current }).catch((error: unknown) => {
      if (statusOf(error) === undefined) throw refusal(error, 'look up the secret id');
      return undefined;
    });
    const expires = Date.parse(lookup?.data?.expiration_time ?? '');
    // Measured on OpenBao's clock (sys/health's server_time_utc), which decides the expiry.
    const health = await admin.health({ standbyok: true }).catch(() => undefined);
    const now = typeof health?.server_time_utc === 'number' ? health.server_time_utc * 1000 : Date.now();
    if (lookup?.data && Number.isFinite(expires) && expires - now > (SECRET_ID_TTL_SECONDS * 1000) / 2) return false;
  }
  const answer = await step(admin.write(`auth/approle/role/${ROLE}/secret-id`, { ttl: SECRET_ID_TTL_SECONDS }), 'issue a secret id');
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeDurably(file, String(answer.data.secret_id));
  return true;
}

/**
 * The unseal key and the tokens exist once, at this moment: written to a temporary file,
 * flushed, renamed into place and the directory flushed, so a crash cannot leave an empty file
 * behind an initialized OpenBao.
 */
export function writeDurably(path: string, content: string): void {
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

export function readKeys(keysFile: string): BaoKeys {
  let keys: Partial<BaoKeys>;
  try {
    keys = JSON.parse(readFileSync(keysFile, 'utf8'));
  } catch {
    throw new Error(`OpenBao is initialized but ${keysFile} is missing or unreadable: restore it from the backup (docs/kms.md)`);
  }
  const token = (t: unknown) => t === undefined || typeof t === 'string';
  if (!Array.isArray(keys.unsealKeys) || !token(keys.rootToken) || !token(keys.initToken)) throw new Error(`${keysFile} is not an OpenBao keys file`);
  return keys as BaoKeys;
}

/**
 * A node-vault client for OpenBao, built as the Vault KMS provider builds its own
 * (libs/kms/src/vault-kms.provider.ts): GET ?list=true instead of the LIST verb, TLS always
 * verified, and none of node-vault's environment fallbacks (VAULT_TOKEN, VAULT_PREFIX,
 * VAULT_NAMESPACE, VAULT_SKIP_VERIFY). Without a token, no X-Vault-Token header is sent.
 */
export function openBaoClient(address: string, token?: string): NodeVault.client {
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
export async function healthStatus(bao: NodeVault.client): Promise<number> {
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
  const config: AppConfig = loadConfig(env, 'required');
  const adminUrl = env.COFFER_INIT_POSTGRES_URL;
  if (!adminUrl) throw new Error('COFFER_INIT_POSTGRES_URL (a superuser connection) is required');
  const roles = await initDatabaseRoles(adminUrl, { DATABASE_OWNER_URL: config.DATABASE_OWNER_URL!, DATABASE_APP_URL: config.DATABASE_APP_URL });
  log(`database roles ready [owner=${roles.owner}] [app=${roles.app}]`);

  if (config.KMS_PROVIDER !== 'vault') return;
  const { KMS_VAULT_ADDR: address, KMS_VAULT_ROLE_ID: roleId, KMS_VAULT_SECRET_ID_FILE: secretIdFile } = config;
  if (!address || !roleId || !secretIdFile) throw new Error('KMS_PROVIDER=vault needs KMS_VAULT_ADDR, KMS_VAULT_ROLE_ID and KMS_VAULT_SECRET_ID_FILE');
  await initOpenBao({
    address,
    mount: config.KMS_VAULT_MOUNT,
    keyPrefix: config.KMS_VAULT_KEY_PREFIX,
    keysFile: env.COFFER_INIT_OPENBAO_KEYS_FILE ?? '/var/lib/coffer-init/openbao-keys.json',
    roleId,
    secretIdFile,
    legacySecretId: env.COFFER_INIT_LEGACY_SECRET_ID || undefined,
    rootToken: env.COFFER_INIT_ROOT_TOKEN || undefined,
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
