import type { Pool } from 'pg';
import type { AppConfig } from '@coffer/config';
import { CachingKmsProvider, DataKeyCache } from './data-key-cache';
import { KmsProvider } from './kms-provider';
import { LocalKmsProvider, loadLocalMasterKey } from './local-kms.provider';
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
  const appRole =
    config.KMS_VAULT_ROLE_ID && config.KMS_VAULT_SECRET_ID
      ? { roleId: config.KMS_VAULT_ROLE_ID, secretId: config.KMS_VAULT_SECRET_ID }
      : undefined;
  if (!config.KMS_VAULT_TOKEN && !appRole) {
    throw new Error('KMS_PROVIDER=vault needs KMS_VAULT_TOKEN, or KMS_VAULT_ROLE_ID and KMS_VAULT_SECRET_ID');
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
