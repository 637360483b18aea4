import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  generateKeyPairSync,
  KeyObject,
  randomBytes,
  randomUUID,
  sign as edSign,
  verify as edVerify,
} from 'node:crypto';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';

/**
 * A test double of the Vault / OpenBao HTTP API: the transit secrets engine, `sys/health` and
 * AppRole login, as described in test/support/README.md (from Vault's API docs). It is a double of
 * Vault, not of Coffer: paths, status codes, envelopes and error texts follow Vault's, with real
 * cryptography (AES-256-GCM, ed25519, HMAC) so that tampering and foreign ciphertext fail the
 * way they do against a real server.
 *
 * Not reproduced: derived/convergent keys, exportable keys, trim, auto-rotation, namespaces,
 * key types other than aes256-gcm96 and ed25519, and the LIST verb (Node's HTTP parser rejects
 * it; clients must use `GET ?list=true`, which Vault accepts too).
 */
export interface VaultTransitDoubleOptions {
  /** Mount path of the transit engine. Default `transit`. */
  mount?: string;
  /** The token every request but health and login must carry. Random by default. */
  token?: string;
  /** Enables `auth/approle/login` with these credentials; login hands out `token`. */
  appRole?: { roleId: string; secretId: string };
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

class VaultHttpError extends Error {
  constructor(
    readonly status: number,
    readonly errors: string[],
  ) {
    super(errors.join('; '));
  }
}

const SUPPORTED_TYPES: KeyType[] = ['aes256-gcm96', 'ed25519'];

export class VaultTransitDouble {
  readonly token: string;
  readonly mount: string;
  /** Requests received, by `METHOD path` (query stripped), to prove a call was or was not made. */
  readonly requests: string[] = [];
  /** Added before answering anything but health: a slow KMS, so a test can act mid-way through work. */
  latencyMs = 0;
  private readonly keys = new Map<string, TransitKey>();
  private readonly appRole?: { roleId: string; secretId: string };
  private server?: Server;
  private port = 0;
  private sealed = false;

  constructor(options: VaultTransitDoubleOptions = {}) {
    this.mount = options.mount ?? 'transit';
    this.token = options.token ?? `hvs.${randomBytes(18).toString('base64url')}`;
    this.appRole = options.appRole;
  }

  get address(): string {
    if (!this.port) throw new Error('the Vault double was never started');
    return `http://127.0.0.1:${this.port}`;
  }

  /** Coffer's settings that point its KMS at this double. */
  get cofferConfig(): { KMS_PROVIDER: 'vault'; KMS_VAULT_ADDR: string; KMS_VAULT_TOKEN: string } {
    return { KMS_PROVIDER: 'vault', KMS_VAULT_ADDR: this.address, KMS_VAULT_TOKEN: this.token };
  }

  /** Listens on a random port the first time, on the same port afterwards. */
  async start(): Promise<void> {
    if (this.server) return;
    const server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Closes the listener and every open connection: clients now get ECONNREFUSED. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  seal(): void {
    this.sealed = true;
  }

  unseal(): void {
    this.sealed = false;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://vault');
    const method = req.method ?? 'GET';
    this.requests.push(`${method} ${url.pathname}`);
    try {
      const raw = await readBody(req);
      if (url.pathname === '/v1/sys/health') return this.health(url, res);
      if (this.latencyMs) await new Promise((resolve) => setTimeout(resolve, this.latencyMs));
      // A sealed Vault answers 503 to everything but health, before looking at the token.
      if (this.sealed) throw new VaultHttpError(503, ['Vault is sealed']);
      const body = parseJson(raw);
      if (url.pathname === '/v1/auth/approle/login' && (method === 'POST' || method === 'PUT')) {
        return this.login(body, res);
      }
      if (req.headers['x-vault-token'] !== this.token) throw new VaultHttpError(403, ['permission denied']);
      const prefix = `/v1/${this.mount}/`;
      if (!url.pathname.startsWith(prefix)) throw new VaultHttpError(404, [`no handler for route "${url.pathname.slice(4)}"`]);
      const path = url.pathname.slice(prefix.length).split('/').map(decodeURIComponent);
      const list = method === 'GET' && parseBool(url.searchParams.get('list'));
      const data = this.transit(method === 'PUT' ? 'POST' : method, path, body, list);
      if (data === undefined) {
        res.writeHead(204).end();
      } else {
        send(res, 200, envelope(data));
      }
    } catch (error) {
      if (error instanceof VaultHttpError) {
        send(res, error.status, { errors: error.errors });
      } else {
        send(res, 500, { errors: ['1 error occurred:\n\t* internal error\n\n'] });
      }
    }
  }

  private health(url: URL, res: ServerResponse): void {
    const code = (param: string, fallback: number) => Number(url.searchParams.get(param) ?? fallback);
    const status = this.sealed ? code('sealedcode', 503) : code('activecode', 200);
    send(res, status, {
      initialized: true,
      sealed: this.sealed,
      standby: this.sealed,
      performance_standby: false,
      server_time_utc: Math.floor(Date.now() / 1000),
      version: '1.15.0+double',
      cluster_name: 'vault-double',
    });
  }

  private login(body: Record<string, unknown>, res: ServerResponse): void {
    if (!this.appRole || body.role_id !== this.appRole.roleId || body.secret_id !== this.appRole.secretId) {
      throw new VaultHttpError(400, ['invalid role or secret ID']);
    }
    send(res, 200, {
      ...envelope(null),
      auth: {
        client_token: this.token,
        accessor: randomUUID(),
        policies: ['default', 'coffer-transit'],
        lease_duration: 3600,
        renewable: true,
      },
    });
  }

  /** The transit engine. Returns `data` for 200, undefined for 204. */
  private transit(method: string, path: string[], body: Record<string, unknown>, list: boolean): unknown {
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
            public_key: (v.secret as KeyObject).export({ format: 'jwk' }).x,
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

function envelope(data: unknown): Record<string, unknown> {
  return {
    request_id: randomUUID(),
    lease_id: '',
    renewable: false,
    lease_duration: 0,
    data,
    wrap_info: null,
    warnings: null,
    auth: null,
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const json = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }).end(json);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function parseJson(raw: string): Record<string, unknown> {
  if (!raw.trim()) return {};
  try {
    const value = JSON.parse(raw);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value;
  } catch {
    // fall through
  }
  throw new VaultHttpError(400, ['failed to parse JSON input']);
}

/** Go's strconv.ParseBool, which Vault uses for `?list=`. */
function parseBool(value: string | null): boolean {
  return value !== null && ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value);
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
