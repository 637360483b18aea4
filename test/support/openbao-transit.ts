import { createCipheriv, createDecipheriv, createHmac, generateKeyPairSync, KeyObject, randomBytes, sign as edSign, verify as edVerify } from 'node:crypto';

/**
 * The transit secrets engine of the OpenBao double (test/support/openbao-double.ts), one per
 * mount: keys, encrypt/decrypt/rewrap, datakey, hmac, sign/verify, with Vault's paths, status
 * codes and error texts (test/support/README.md), and real cryptography (AES-256-GCM, ed25519, HMAC) so that tampered and
 * foreign ciphertext fail the way they do against a real server.
 *
 * Not reproduced: derived/convergent keys, exportable keys, trim, auto-rotation, and key types
 * other than aes256-gcm96 and ed25519.
 */

/** An error answer: the HTTP status and Vault's `errors` list. */
export class VaultHttpError extends Error {
  constructor(
    readonly status: number,
    readonly errors: string[],
  ) {
    super(errors.join('; '));
  }
}

type KeyType = 'aes256-gcm96' | 'ed25519';

interface KeyVersion {
  createdAt: number;
  /** AES key, or the ed25519 private key. */
  secret: Buffer | KeyObject;
  hmacKey: Buffer;
}

interface TransitKey {
  name: string;
  type: KeyType;
  versions: Map<number, KeyVersion>;
  latestVersion: number;
  minDecryptionVersion: number;
  minEncryptionVersion: number;
  deletionAllowed: boolean;
}

const SUPPORTED_TYPES: KeyType[] = ['aes256-gcm96', 'ed25519'];

export class TransitEngine {
  private readonly keys = new Map<string, TransitKey>();

  /**
   * One request to the engine: `method` (PUT already taken as POST), the path below the mount,
   * the JSON body, and whether it was a LIST. Returns `data` for 200, undefined for 204.
   */
  handle(method: string, path: string[], body: Record<string, unknown>, list: boolean): unknown {
    const [op, name, sub, ...rest] = path;
    if (method === 'POST' && op === 'datakey' && sub !== undefined && !rest.length) {
      return this.dataKey(name, sub, body); // datakey/<plaintext|wrapped>/<name>
    }
    const route = `${method} ${op}${name === undefined ? '' : '/:name'}${sub === undefined ? '' : `/${sub}`}`;
    switch (route) {
      case 'GET keys':
        if (!list) break;
        if (this.keys.size === 0) throw new VaultHttpError(404, []);
        return { keys: [...this.keys.keys()].sort() };
      case 'GET keys/:name': {
        const key = this.keys.get(name);
        if (!key) throw new VaultHttpError(404, []);
        return readKey(key);
      }
      case 'POST keys/:name':
        return this.createKey(name, body);
      case 'DELETE keys/:name': {
        const key = this.requireKey(name);
        if (!key.deletionAllowed) throw new VaultHttpError(400, ['deletion is not allowed for this key']);
        this.keys.delete(name);
        return undefined;
      }
      case 'POST keys/:name/rotate': {
        const key = this.requireKey(name);
        key.latestVersion += 1;
        key.versions.set(key.latestVersion, newVersion(key.type));
        return readKey(key);
      }
      case 'POST keys/:name/config':
        return this.configure(this.requireKey(name), body);
      case 'POST encrypt/:name':
        return this.batch(body, (item) => this.encrypt(this.upsertKey(name), item));
      case 'POST decrypt/:name':
        return this.batch(body, (item) => ({ plaintext: this.decrypt(this.requireKey(name), item).toString('base64') }));
      case 'POST rewrap/:name':
        return this.batch(body, (item) => {
          const key = this.requireKey(name);
          return this.encrypt(key, { plaintext: this.decrypt(key, item).toString('base64') });
        });
      case 'POST hmac/:name':
      case `POST hmac/:name/${sub}`:
        return this.hmac(this.requireKey(name), body, sub);
      case 'POST sign/:name':
      case `POST sign/:name/${sub}`:
        return this.sign(this.requireKey(name), body);
      case 'POST verify/:name':
      case `POST verify/:name/${sub}`:
        return this.verify(this.requireKey(name), body);
    }
    throw new VaultHttpError(404, [`1 error occurred:\n\t* unsupported path\n\n`]);
  }

  private createKey(name: string, body: Record<string, unknown>): unknown {
    const type = (body.type ?? 'aes256-gcm96') as KeyType;
    if (!SUPPORTED_TYPES.includes(type)) throw new VaultHttpError(400, [`unknown key type: ${String(body.type)}`]);
    const existing = this.keys.get(name);
    if (existing) {
      // Vault upserts: an existing key is left as it is, whatever type was asked for.
      return readKey(existing);
    }
    this.keys.set(name, {
      name,
      type,
      versions: new Map([[1, newVersion(type)]]),
      latestVersion: 1,
      minDecryptionVersion: 1,
      minEncryptionVersion: 0,
      deletionAllowed: false,
    });
    return undefined; // 204, as older Vault and OpenBao answer a create
  }

  private configure(key: TransitKey, body: Record<string, unknown>): undefined {
    if (body.min_decryption_version !== undefined) {
      const version = int(body.min_decryption_version, 'min_decryption_version');
      if (version < 0) throw new VaultHttpError(400, ['min decryption version must be positive']);
      if (version > key.latestVersion) {
        throw new VaultHttpError(400, [
          `cannot set min decryption version of ${version}, latest key version is ${key.latestVersion}`,
        ]);
      }
      if (version > 0) key.minDecryptionVersion = version;
    }
    if (body.min_encryption_version !== undefined) {
      const version = int(body.min_encryption_version, 'min_encryption_version');
      if (version !== 0 && version < key.minDecryptionVersion) {
        throw new VaultHttpError(400, ['cannot set min encryption/decryption values; min encryption version must be greater than or equal to min decryption version']);
      }
      key.minEncryptionVersion = version;
    }
    if (body.deletion_allowed !== undefined) key.deletionAllowed = body.deletion_allowed === true || body.deletion_allowed === 'true';
    return undefined;
  }

  private encrypt(key: TransitKey, item: Record<string, unknown>): { ciphertext: string; key_version: number } {
    if (key.type !== 'aes256-gcm96') throw new VaultHttpError(400, [`key type ${key.type} does not support encryption`]);
    const plaintext = base64(item.plaintext, 'plaintext');
    const version = item.key_version === undefined ? key.latestVersion : int(item.key_version, 'key_version');
    if (version < Math.max(key.minEncryptionVersion, 1) || version > key.latestVersion) {
      throw new VaultHttpError(400, ['requested version for encryption is less than the minimum encryption key version']);
    }
    const secret = key.versions.get(version)!.secret as Buffer;
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', secret, nonce);
    if (item.associated_data !== undefined) cipher.setAAD(base64(item.associated_data, 'associated_data'));
    const sealed = Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    return { ciphertext: `vault:v${version}:${sealed.toString('base64')}`, key_version: version };
  }

  private decrypt(key: TransitKey, item: Record<string, unknown>): Buffer {
    if (key.type !== 'aes256-gcm96') throw new VaultHttpError(400, [`key type ${key.type} does not support decryption`]);
    const { version, body } = this.versioned(key, item.ciphertext, 'ciphertext');
    const secret = key.versions.get(version)!.secret as Buffer;
    if (body.length < 12 + 16) throw new VaultHttpError(400, ['invalid ciphertext: unable to decrypt']);
    try {
      const decipher = createDecipheriv('aes-256-gcm', secret, body.subarray(0, 12));
      if (item.associated_data !== undefined) decipher.setAAD(base64(item.associated_data, 'associated_data'));
      decipher.setAuthTag(body.subarray(body.length - 16));
      return Buffer.concat([decipher.update(body.subarray(12, body.length - 16)), decipher.final()]);
    } catch {
      throw new VaultHttpError(400, ['cipher: message authentication failed']);
    }
  }

  private dataKey(kind: string, name: string, body: Record<string, unknown>): unknown {
    if (kind !== 'plaintext' && kind !== 'wrapped') throw new VaultHttpError(400, ['invalid type']);
    const key = this.requireKey(name);
    const bits = body.bits === undefined ? 256 : int(body.bits, 'bits');
    if (![128, 256, 512].includes(bits)) throw new VaultHttpError(400, ['invalid bits value']);
    const plaintext = randomBytes(bits / 8);
    const { ciphertext, key_version } = this.encrypt(key, { plaintext: plaintext.toString('base64') });
    return kind === 'plaintext'
      ? { plaintext: plaintext.toString('base64'), ciphertext, key_version }
      : { ciphertext, key_version };
  }

  private hmac(key: TransitKey, body: Record<string, unknown>, algorithm = 'sha2-256'): unknown {
    const algorithms: Record<string, string> = { 'sha2-256': 'sha256', 'sha2-384': 'sha384', 'sha2-512': 'sha512' };
    const algo = algorithms[String(body.algorithm ?? algorithm)];
    if (!algo) throw new VaultHttpError(400, [`unsupported algorithm ${algorithm}`]);
    const version = key.latestVersion;
    const mac = createHmac(algo, key.versions.get(version)!.hmacKey).update(base64(body.input, 'input')).digest();
    return { hmac: `vault:v${version}:${mac.toString('base64')}` };
  }

  private sign(key: TransitKey, body: Record<string, unknown>): unknown {
    if (key.type !== 'ed25519') throw new VaultHttpError(400, [`key type ${key.type} does not support signing`]);
    const version = key.latestVersion;
    const signature = edSign(null, base64(body.input, 'input'), key.versions.get(version)!.secret as KeyObject);
    return { signature: `vault:v${version}:${signature.toString('base64')}`, key_version: version };
  }

  private verify(key: TransitKey, body: Record<string, unknown>): unknown {
    if (key.type !== 'ed25519') throw new VaultHttpError(400, [`key type ${key.type} does not support verification`]);
    const { version, body: signature } = this.versioned(key, body.signature, 'signature');
    const privateKey = key.versions.get(version)!.secret as KeyObject;
    return { valid: edVerify(null, base64(body.input, 'input'), privateKey, signature) };
  }

  /** Parses `vault:vN:<base64>` and applies the key's version policy. */
  private versioned(key: TransitKey, value: unknown, field: string): { version: number; body: Buffer } {
    if (typeof value !== 'string' || !value) throw new VaultHttpError(400, [`missing ${field} to decrypt`]);
    const match = /^vault:v(\d+):(.*)$/.exec(value);
    if (!match) throw new VaultHttpError(400, [`invalid ${field}: no prefix`]);
    const version = Number(match[1]);
    if (version < key.minDecryptionVersion) {
      throw new VaultHttpError(400, ['ciphertext or signature version is disallowed by policy (too old)']);
    }
    if (version < 1 || version > key.latestVersion) throw new VaultHttpError(400, ['invalid key version']);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(match[2])) throw new VaultHttpError(400, [`invalid ${field}: could not decode base64`]);
    return { version, body: Buffer.from(match[2], 'base64') };
  }

  private batch(body: Record<string, unknown>, one: (item: Record<string, unknown>) => unknown): unknown {
    if (!Array.isArray(body.batch_input)) return one(body);
    return {
      batch_results: body.batch_input.map((item: Record<string, unknown>) => {
        try {
          return one(item);
        } catch (error) {
          if (error instanceof VaultHttpError) return { error: error.errors.join('; ') };
          throw error;
        }
      }),
    };
  }

  private requireKey(name: string): TransitKey {
    const key = this.keys.get(name);
    if (!key) throw new VaultHttpError(400, ['encryption key not found']);
    return key;
  }

  /** encrypt creates a missing key, as Vault does for a token allowed to write it. */
  private upsertKey(name: string): TransitKey {
    if (!this.keys.has(name)) this.createKey(name, {});
    return this.keys.get(name)!;
  }
}

function newVersion(type: KeyType): KeyVersion {
  const secret = type === 'ed25519' ? generateKeyPairSync('ed25519').privateKey : randomBytes(32);
  return { createdAt: Math.floor(Date.now() / 1000), secret, hmacKey: randomBytes(32) };
}

function readKey(key: TransitKey): Record<string, unknown> {
  const keys: Record<string, unknown> = {};
  for (const [version, v] of key.versions) {
    keys[String(version)] =
      key.type === 'ed25519'
        ? {
            creation_time: new Date(v.createdAt * 1000).toISOString(),
            name: 'ed25519',
            // Vault's transit answers an ed25519 key's public half as standard base64 of its 32 raw bytes.
            public_key: Buffer.from((v.secret as KeyObject).export({ format: 'jwk' }).x!, 'base64url').toString('base64'),
          }
        : v.createdAt;
  }
  return {
    name: key.name,
    type: key.type,
    keys,
    latest_version: key.latestVersion,
    min_decryption_version: key.minDecryptionVersion,
    min_encryption_version: key.minEncryptionVersion,
    min_available_version: 0,
    deletion_allowed: key.deletionAllowed,
    derived: false,
    exportable: false,
    allow_plaintext_backup: false,
    auto_rotate_period: 0,
    supports_encryption: key.type === 'aes256-gcm96',
    supports_decryption: key.type === 'aes256-gcm96',
    supports_derivation: true,
    supports_signing: key.type === 'ed25519',
    imported_key: false,
  };
}

/** Vault's field parser takes ints as JSON numbers or numeric strings. */
function int(value: unknown, field: string): number {
  const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n)) {
    throw new VaultHttpError(400, [`error converting input ${String(value)} for field "${field}"`]);
  }
  return n;
}

function base64(value: unknown, field: string): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) {
    throw new VaultHttpError(400, [`unable to decode ${field} as base64`]);
  }
  return Buffer.from(value, 'base64');
}
