import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  generateKeyPairSync,
  KeyObject,
  randomBytes,
  sign as edSign,
  verify as edVerify,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ClientBase, Pool } from 'pg';
import { PG_UNDEFINED_TABLE, pgCode, transaction } from '@coffer/database';
import {
  DataKey,
  KmsHealth,
  KmsKeyInfo,
  KmsKeyType,
  KmsProvider,
  KmsPublicKey,
  KmsRequestError,
  KmsUnavailableError,
  WrappedKey,
} from './kms-provider';
import { assertKeyName, parseWrapped } from './kms-names';

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const PREFIX = 'local';

interface KeyState {
  type: KmsKeyType;
  latestVersion: number;
  minDecryptionVersion: number;
}

/**
 * The embedded KMS: a 256-bit master key held by the process (file or secret), and per-name
 * versioned keys stored in the control-plane database wrapped under it (`kms_keys`). Key state
 * (latest and min_decryption_version) is read from the database on every call, so a change made
 * by another replica applies at once; key versions never change, so their unwrapped form is
 * cached in memory.
 */
export class LocalKmsProvider implements KmsProvider {
  readonly kind = 'local' as const;
  private readonly master: KeyObject;
  private readonly versions = new Map<string, KeyObject>();

  constructor(
    private readonly pool: Pool,
    masterKey: Buffer,
  ) {
    if (masterKey.length !== 32) throw new Error('the local KMS master key must be 32 bytes (256 bits)');
    this.master = createSecretKey(masterKey);
  }

  async health(): Promise<KmsHealth> {
    try {
      await this.pool.query('SELECT 1 FROM kms_key_state LIMIT 1');
      return { reachable: true, sealed: false };
    } catch (error) {
      return { reachable: false, sealed: false, detail: errorCode(error) ?? 'key store unreachable' };
    }
  }

  async ensureKey(name: string, type: KmsKeyType = 'aes256-gcm96'): Promise<void> {
    assertKeyName(name);
    await this.db(() =>
      transaction(this.pool, async (db) => {
        const created = await db.query(
          `INSERT INTO kms_key_state (name, type, latest_version) VALUES ($1, $2, 1)
           ON CONFLICT (name) DO NOTHING RETURNING name`,
          [name, type],
        );
        if (created.rowCount) {
          await this.addVersion(db, name, 1, type);
          return;
        }
        const state = await this.state(db, name);
        if (state.type !== type) throw new KmsRequestError(`key ${name} exists with another type (${state.type})`, 400);
      }),
    );
  }

  async keyInfo(name: string): Promise<KmsKeyInfo> {
    assertKeyName(name);
    return this.db(async () => {
      const state = await this.state(this.pool, name);
      const { rows } = await this.pool.query<{ version: number; created_at: Date }>(
        'SELECT version, created_at FROM kms_keys WHERE name = $1 ORDER BY version',
        [name],
      );
      return {
        name,
        type: state.type,
        latestVersion: state.latestVersion,
        minDecryptionVersion: state.minDecryptionVersion,
        versions: rows.map((r) => ({ version: r.version, createdAt: r.created_at })),
      };
    });
  }

  async rotate(name: string): Promise<number> {
    assertKeyName(name);
    return this.db(() =>
      transaction(this.pool, async (db) => {
        // The row lock of this UPDATE serializes concurrent rotations of one key.
        const { rows } = await db.query<{ latest_version: number; type: KmsKeyType }>(
          'UPDATE kms_key_state SET latest_version = latest_version + 1 WHERE name = $1 RETURNING latest_version, type',
          [name],
        );
        if (!rows[0]) throw unknownKey(name);
        await this.addVersion(db, name, rows[0].latest_version, rows[0].type);
        return rows[0].latest_version;
      }),
    );
  }

  async setMinDecryptionVersion(name: string, version: number): Promise<void> {
    assertKeyName(name);
    await this.db(async () => {
      const state = await this.state(this.pool, name);
      if (!Number.isInteger(version) || version < 1 || version > state.latestVersion) {
        throw new KmsRequestError(
          `min_decryption_version must be between 1 and the latest version (${state.latestVersion})`,
          400,
        );
      }
      await this.pool.query('UPDATE kms_key_state SET min_decryption_version = $2 WHERE name = $1', [name, version]);
    });
  }

  async generateDataKey(name: string): Promise<DataKey> {
    const plaintext = randomBytes(32);
    try {
      return { ...(await this.wrapLatest(name, plaintext)), plaintext };
    } catch (error) {
      plaintext.fill(0);
      throw error;
    }
  }

  wrap(name: string, plaintext: Buffer): Promise<WrappedKey> {
    return this.wrapLatest(name, plaintext);
  }

  async unwrap(name: string, wrapped: string): Promise<Buffer> {
    assertKeyName(name);
    const { version, body } = parseWrapped(wrapped, PREFIX);
    return this.db(async () => {
      const state = await this.state(this.pool, name);
      requireType(name, state, 'aes256-gcm96');
      this.checkDecryptable(state, version);
      const key = await this.versionKey(name, version);
      const plaintext = open(key, body, dekAad(name, version));
      if (!plaintext) throw new KmsRequestError('wrapped key failed authentication (tampered, or not wrapped under this key)', 400);
      return plaintext;
    });
  }

  async rewrap(name: string, wrapped: string): Promise<WrappedKey> {
    const plaintext = await this.unwrap(name, wrapped);
    try {
      return await this.wrapLatest(name, plaintext);
    } finally {
      plaintext.fill(0);
    }
  }

  async sign(name: string, data: Buffer): Promise<string> {
    assertKeyName(name);
    return this.db(async () => {
      const state = await this.state(this.pool, name);
      requireType(name, state, 'ed25519');
      const key = await this.versionKey(name, state.latestVersion);
      return `${PREFIX}:v${state.latestVersion}:${edSign(null, data, key).toString('base64')}`;
    });
  }

  async verify(name: string, data: Buffer, signature: string): Promise<boolean> {
    assertKeyName(name);
    const { version, body } = parseWrapped(signature, PREFIX);
    return this.db(async () => {
      const state = await this.state(this.pool, name);
      requireType(name, state, 'ed25519');
      this.checkDecryptable(state, version);
      const key = await this.versionKey(name, version);
      return edVerify(null, data, createPublicKey(key), body);
    });
  }

  /** Derived from the stored private key of each version. */
  async publicKeys(name: string): Promise<KmsPublicKey[]> {
    assertKeyName(name);
    return this.db(async () => {
      const state = await this.state(this.pool, name);
      requireType(name, state, 'ed25519');
      const { rows } = await this.pool.query<{ version: number; created_at: Date }>(
        'SELECT version, created_at FROM kms_keys WHERE name = $1 ORDER BY version',
        [name],
      );
      const keys: KmsPublicKey[] = [];
      for (const row of rows) {
        const jwk = createPublicKey(await this.versionKey(name, row.version)).export({ format: 'jwk' });
        keys.push({ version: row.version, publicKey: Buffer.from(jwk.x!, 'base64url').toString('base64'), createdAt: row.created_at });
      }
      return keys;
    });
  }

  private async wrapLatest(name: string, plaintext: Buffer): Promise<WrappedKey> {
    assertKeyName(name);
    return this.db(async () => {
      const state = await this.state(this.pool, name);
      requireType(name, state, 'aes256-gcm96');
      const version = state.latestVersion;
      const key = await this.versionKey(name, version);
      const body = seal(key, plaintext, dekAad(name, version));
      return { wrapped: `${PREFIX}:v${version}:${body.toString('base64')}`, keyVersion: version };
    });
  }

  private checkDecryptable(state: KeyState, version: number): void {
    if (version < state.minDecryptionVersion) {
      throw new KmsRequestError('key version is disallowed by policy (below min_decryption_version)', 400);
    }
    if (version > state.latestVersion) throw new KmsRequestError('invalid key version', 400);
  }

  private async state(db: Pick<ClientBase, 'query'>, name: string): Promise<KeyState> {
    const { rows } = await db.query<{ type: KmsKeyType; latest_version: number; min_decryption_version: number }>(
      'SELECT type, latest_version, min_decryption_version FROM kms_key_state WHERE name = $1',
      [name],
    );
    if (!rows[0]) throw unknownKey(name);
    return {
      type: rows[0].type,
      latestVersion: rows[0].latest_version,
      minDecryptionVersion: rows[0].min_decryption_version,
    };
  }

  private async addVersion(db: ClientBase, name: string, version: number, type: KmsKeyType): Promise<void> {
    const material =
      type === 'ed25519'
        ? generateKeyPairSync('ed25519').privateKey.export({ format: 'der', type: 'pkcs8' })
        : randomBytes(32);
    try {
      const wrapped = seal(this.master, material, materialAad(name, version, type));
      await db.query('INSERT INTO kms_keys (name, version, type, wrapped_material) VALUES ($1, $2, $3, $4)', [
        name,
        version,
        type,
        wrapped,
      ]);
    } finally {
      material.fill(0);
    }
  }

  /** The unwrapped key of one version, from memory or the database. */
  private async versionKey(name: string, version: number): Promise<KeyObject> {
    const id = `${name}\u0000${version}`;
    const cached = this.versions.get(id);
    if (cached) return cached;
    const { rows } = await this.pool.query<{ type: KmsKeyType; wrapped_material: Buffer }>(
      'SELECT type, wrapped_material FROM kms_keys WHERE name = $1 AND version = $2',
      [name, version],
    );
    if (!rows[0]) throw new KmsRequestError('invalid key version', 400);
    const { type, wrapped_material } = rows[0];
    const material = open(this.master, wrapped_material, materialAad(name, version, type));
    // Not a request problem: the stored key does not open under this master key.
    if (!material) throw new KmsMasterKeyMismatchError(name, version);
    try {
      const key =
        type === 'ed25519' ? createPrivateKey({ key: material, format: 'der', type: 'pkcs8' }) : createSecretKey(material);
      this.versions.set(id, key);
      return key;
    } finally {
      material.fill(0);
    }
  }

  /** Runs a key-store operation; a lost database connection is "KMS unavailable". */
  private async db<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      if (isConnectionError(error)) throw new KmsUnavailableError('local KMS key store unavailable');
      throw error;
    }
  }
}

/**
 * The key store of this database was written under another master key: the database belongs to
 * another installation, or the master key was replaced. Nothing in it can be decrypted, so a
 * process that meets this refuses to start (main.ts of the API and the worker print the message).
 */
export class KmsMasterKeyMismatchError extends Error {
  readonly code = 'kms_master_key_mismatch';
  constructor(
    readonly keyName: string,
    readonly keyVersion: number,
  ) {
    super(
      `the local KMS key ${keyName} (version ${keyVersion}) stored in this database does not unwrap under the configured master key: ` +
        'the database belongs to another installation, or its master key was replaced',
    );
  }
}

/**
 * Opens the oldest key of the local KMS's key store with `masterKey`, so that a start against a
 * database whose keys were wrapped under another master key stops at once, before it reads or
 * writes anything (KmsMasterKeyMismatchError). False when there is no key store yet (a new
 * database, or one not migrated yet): nothing to check.
 */
export async function checkLocalMasterKey(db: Pick<ClientBase, 'query'>, masterKey: Buffer): Promise<boolean> {
  let rows: { name: string; version: number; type: KmsKeyType; wrapped_material: Buffer }[];
  try {
    ({ rows } = await db.query('SELECT name, version, type, wrapped_material FROM kms_keys ORDER BY created_at, name, version LIMIT 1'));
  } catch (error) {
    if (pgCode(error) === PG_UNDEFINED_TABLE) return false;
    throw error;
  }
  if (!rows[0]) return false;
  const { name, version, type, wrapped_material } = rows[0];
  const material = open(createSecretKey(masterKey), wrapped_material, materialAad(name, version, type));
  if (!material) throw new KmsMasterKeyMismatchError(name, version);
  material.fill(0);
  return true;
}

/** The master key from config: a file (32 raw bytes or base64) or a base64 secret, not both. */
export function loadLocalMasterKey(options: { file?: string; base64?: string }): Buffer {
  if (options.file && options.base64) {
    throw new Error('set KMS_LOCAL_MASTER_KEY_FILE or KMS_LOCAL_MASTER_KEY, not both');
  }
  let key: Buffer;
  if (options.file) {
    const raw = readFileSync(options.file);
    key = raw.length === 32 ? raw : Buffer.from(raw.toString('utf8').trim(), 'base64');
  } else if (options.base64) {
    key = Buffer.from(options.base64.trim(), 'base64');
  } else {
    throw new Error('the local KMS needs a master key: set KMS_LOCAL_MASTER_KEY_FILE or KMS_LOCAL_MASTER_KEY');
  }
  if (key.length !== 32) throw new Error('the local KMS master key must be 32 bytes (256 bits), raw or base64');
  return key;
}

function seal(key: KeyObject, plaintext: Buffer, aad: Buffer): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce).setAAD(aad);
  return Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** The plaintext, or undefined when the value does not authenticate under key and aad. */
function open(key: KeyObject, sealed: Buffer, aad: Buffer): Buffer | undefined {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, NONCE_BYTES)).setAAD(aad);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    return Buffer.concat([decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
  } catch {
    return undefined;
  }
}

const materialAad = (name: string, version: number, type: KmsKeyType) =>
  Buffer.from(`coffer-kms-local:key:${name}:v${version}:${type}`);
const dekAad = (name: string, version: number) => Buffer.from(`coffer-kms-local:dek:${name}:v${version}`);

function requireType(name: string, state: KeyState, type: KmsKeyType): void {
  if (state.type !== type) throw new KmsRequestError(`key ${name} is ${state.type}, not ${type}`, 400);
}

function unknownKey(name: string): KmsRequestError {
  return new KmsRequestError(`unknown key ${name}`, 404);
}

function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : undefined;
}

function isConnectionError(error: unknown): boolean {
  const code = errorCode(error);
  if (!code) return error instanceof Error && /Connection terminated|connect ECONNREFUSED/.test(error.message);
  // SQLSTATE 08 (connection exception), 57P0x (server shutting down), and socket errors.
  return /^(08|57P0)/.test(code) || ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH'].includes(code);
}
