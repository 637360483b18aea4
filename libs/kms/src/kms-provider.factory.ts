import { readFileSync } from 'node:fs';
import { Client, type Pool } from 'pg';
import type { AppConfig } from '@coffer/config';
import { databaseOf } from '@coffer/database';
import { CachingKmsProvider, DataKeyCache } from './data-key-cache';
import { KmsProvider, KmsUnavailableError } from './kms-provider';
import { checkLocalMasterKey, KmsMasterKeyMismatchError, LocalKmsProvider, loadLocalMasterKey } from './local-kms.provider';
import { VaultKmsProvider } from './vault-kms.provider';

/**
 * The provider KMS_PROVIDER names, behind the data-key cache. `controlPool` is the app-role pool
 * of the control-plane database, where the local provider keeps its wrapped keys.
 */
export function createKmsProvider(config: AppConfig, controlPool: Pool): CachingKmsProvider {
  return new CachingKmsProvider(
    createBareKmsProvider(config, controlPool),
    new DataKeyCache({
      maxAgeMs: config.KMS_DEK_CACHE_MAX_AGE_SECONDS * 1000,
      maxUses: config.KMS_DEK_CACHE_MAX_USES,
      maxEntries: config.KMS_DEK_CACHE_MAX_ENTRIES,
    }),
  );
}

/** The provider alone, without the cache. Throws on an incomplete KMS configuration. */
export function createBareKmsProvider(config: AppConfig, controlPool: Pool): KmsProvider {
  if (config.KMS_PROVIDER === 'local') {
    const masterKey = loadLocalMasterKey({ file: config.KMS_LOCAL_MASTER_KEY_FILE, base64: config.KMS_LOCAL_MASTER_KEY });
    try {
      return new LocalKmsProvider(controlPool, masterKey);
    } finally {
      masterKey.fill(0);
    }
  }
  if (!config.KMS_VAULT_ADDR) throw new Error('KMS_PROVIDER=vault needs KMS_VAULT_ADDR');
  const file = config.KMS_VAULT_SECRET_ID_FILE;
  // The file is read at every login: the unsealer renews the secret id there (ADR 0011).
  const secretId = file ? () => readSecretIdFile(file) : config.KMS_VAULT_SECRET_ID;
  const appRole = config.KMS_VAULT_ROLE_ID && secretId ? { roleId: config.KMS_VAULT_ROLE_ID, secretId } : undefined;
  if (!config.KMS_VAULT_TOKEN && !appRole) {
    throw new Error('KMS_PROVIDER=vault needs KMS_VAULT_TOKEN, or KMS_VAULT_ROLE_ID and KMS_VAULT_SECRET_ID(_FILE)');
  }
  return new VaultKmsProvider({
    address: config.KMS_VAULT_ADDR,
    token: config.KMS_VAULT_TOKEN,
    appRole,
    mount: config.KMS_VAULT_MOUNT,
    keyPrefix: config.KMS_VAULT_KEY_PREFIX,
    timeoutMs: config.KMS_VAULT_TIMEOUT_MS,
  });
}

/** The secret id in KMS_VAULT_SECRET_ID_FILE; a missing or empty file is the KMS unavailable, not a crash. */
function readSecretIdFile(file: string): string {
  let secretId = '';
  try {
    secretId = readFileSync(file, 'utf8').trim();
  } catch {
    // reported below
  }
  if (!secretId) throw new KmsUnavailableError(`KMS unavailable: no AppRole secret id in ${file} yet`);
  return secretId;
}

/**
 * Before the API or the worker starts: with the local KMS, the master key must open the key store
 * of the configured control-plane database (checkLocalMasterKey), or the process would read data
 * it cannot decrypt and write more under a key nobody can open with the data. Throws
 * KmsMasterKeyMismatchError; anything else (a database not created or not reachable yet) is left
 * to the start itself.
 */
export async function assertLocalMasterKeyOpensStore(config: AppConfig): Promise<void> {
  if (config.KMS_PROVIDER !== 'local') return;
  const masterKey = loadLocalMasterKey({ file: config.KMS_LOCAL_MASTER_KEY_FILE, base64: config.KMS_LOCAL_MASTER_KEY });
  const client = new Client({ connectionString: config.DATABASE_APP_URL, connectionTimeoutMillis: 5000, application_name: 'coffer-start-check' });
  try {
    await client.connect();
    await checkLocalMasterKey(client, masterKey);
  } catch (error) {
    if (error instanceof KmsMasterKeyMismatchError) throw error;
  } finally {
    masterKey.fill(0);
    await client.end().catch(() => undefined);
  }
}

/** The KmsMasterKeyMismatchError a start failed with, wherever in the error's causes it is. */
export function masterKeyMismatchIn(error: unknown): KmsMasterKeyMismatchError | undefined {
  for (let e = error, depth = 0; e && depth < 10; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof KmsMasterKeyMismatchError) return e;
  }
  return undefined;
}

/**
 * The one line a process that refuses to start prints for a master key mismatch: what is wrong,
 * with which database and key, and what to do. Names no secret (the key's file, not the key).
 */
export function masterKeyMismatchLine(service: string, error: KmsMasterKeyMismatchError, config: AppConfig): string {
  const key = config.KMS_LOCAL_MASTER_KEY_FILE ? `KMS_LOCAL_MASTER_KEY_FILE=${config.KMS_LOCAL_MASTER_KEY_FILE}` : 'KMS_LOCAL_MASTER_KEY';
  return (
    `${service} refuses to start: ${error.message} (database ${databaseOf(config.DATABASE_APP_URL)}, ${key}). ` +
    'Start it with the master key this database was created with (restore it from the backup of that installation), ' +
    "or point DATABASE_OWNER_URL and DATABASE_APP_URL at this installation's own database."
  );
}
