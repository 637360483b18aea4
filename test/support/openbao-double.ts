import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { TransitEngine, VaultHttpError } from './openbao-transit';

/**
 * A test double of one OpenBao (or Vault) server over HTTP: the administration API that
 * `coffer init` drives (`sys/init`, `sys/seal-status`, `sys/unseal`, `sys/health`, `sys/mounts`,
 * `sys/policies/acl`, `sys/auth`, the AppRole role endpoints and login) and the transit engine
 * that Coffer's KMS uses (test/support/openbao-transit.ts), mounted wherever `sys/mounts` puts it.
 * It is a double of OpenBao, not of Coffer: paths, status codes and body shapes follow the public
 * Vault / OpenBao HTTP API:
 *
 * - one seal model: a server is uninitialized until `sys/init`, sealed after init and after a
 *   restart until `sys/unseal` gets the key; while uninitialized or sealed it answers 503
 *   `Vault is sealed` to everything but `sys/health`, `sys/init`, `sys/seal-status` and
 *   `sys/unseal`, before looking at the token;
 * - `GET /v1/sys/health`: 200 active, 429 standby, 501 uninitialized, 503 sealed, each status
 *   replaceable by `activecode`, `standbycode`, `uninitcode`, `sealedcode`, and `standbyok`;
 * - every other call needs the root token (or the one an AppRole login hands out) in
 *   `X-Vault-Token`, else 403 `permission denied`;
 * - errors are `{"errors": [...]}`; successes are wrapped in the response envelope
 *   (`{request_id, ..., data}`), or 204 with no body where Vault answers so;
 * - LIST is `GET ?list=true` (Vault accepts both; Node's HTTP parser rejects the LIST verb).
 *
 * By default the server is ready for Coffer: initialized, unsealed, transit at `mount` and
 * `token` valid, as after `coffer init`. `{ uninitialized: true }` starts it as a fresh
 * container. Test titles name it by the API they exercise: "Vault transit double" for the
 * transit engine, "OpenBao sys API double" for the administration API.
 */
export interface OpenBaoDoubleOptions {
  /** A fresh server: not initialized, sealed, no secrets engine, no token. */
  uninitialized?: boolean;
  /** Where the ready server's transit engine is mounted. Default `transit`. */
  mount?: string;
  /** The ready server's root token. Random by default. */
  token?: string;
  /** Enables AppRole with one role `coffer` holding this role id and secret id. */
  appRole?: { roleId: string; secretId: string };
}

interface AppRole {
  config: Record<string, unknown>;
  roleId?: string;
  secretIds: string[];
}

export class OpenBaoDouble {
  /** Requests received, as `METHOD /v1/path` (query stripped), to prove a call was or was not made. */
  readonly requests: string[] = [];
  /** Added before answering anything but health: a slow server, so a test can act mid-way through work. */
  latencyMs = 0;
  /** A standby node: health answers 429 (data requests are forwarded to the active node). */
  standby = false;
  readonly mount: string;
  /** Secrets engines and auth methods by path (`transit/`), with their type. */
  readonly mounts = new Map<string, string>([['sys/', 'system']]);
  readonly auths = new Map<string, string>([['token/', 'token']]);
  readonly policies = new Map<string, string>();
  readonly roles = new Map<string, AppRole>();
  private engines = new Map<string, TransitEngine>();
  private state = { initialized: false, sealed: true, token: '', unsealKey: '' };
  private server?: Server;
  private port = 0;

  constructor(options: OpenBaoDoubleOptions = {}) {
    this.mount = options.mount ?? 'transit';
    if (!options.uninitialized) {
      this.initialize(options.token ?? `hvs.${randomBytes(18).toString('base64url')}`);
      this.state.sealed = false;
      this.mounts.set(`${this.mount}/`, 'transit');
    }
    if (options.appRole) {
      this.auths.set('approle/', 'approle');
      this.roles.set('coffer', { config: {}, roleId: options.appRole.roleId, secretIds: [options.appRole.secretId] });
    }
  }

  get initialized(): boolean {
    return this.state.initialized;
  }

  get sealed(): boolean {
    return this.state.sealed;
  }

  /** The root token: given by `sys/init`, or set from the start on a ready server. */
  get token(): string {
    return this.state.token;
  }

  /** The one unseal key (one share, threshold one). */
  get unsealKey(): string {
    return this.state.unsealKey;
  }

  get address(): string {
    if (!this.port) throw new Error('the OpenBao double was never started');
    return `http://127.0.0.1:${this.port}`;
  }

  /** Coffer's settings that point its KMS at this double's transit engine. */
  get cofferConfig(): { KMS_PROVIDER: 'vault'; KMS_VAULT_ADDR: string; KMS_VAULT_TOKEN: string; KMS_VAULT_MOUNT: string } {
    return { KMS_PROVIDER: 'vault', KMS_VAULT_ADDR: this.address, KMS_VAULT_TOKEN: this.token, KMS_VAULT_MOUNT: this.mount };
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

  /** What a container restart does: the data stays, the server comes back on its port, sealed. */
  async restart(): Promise<void> {
    await this.stop();
    this.seal();
    await this.start();
  }

  seal(): void {
    this.state.sealed = true;
  }

  /** What an operator's `bao operator unseal` does. */
  unseal(): void {
    if (!this.state.initialized) throw new Error('an uninitialized server cannot be unsealed');
    this.state.sealed = false;
  }

  private initialize(token: string): void {
    this.state = { initialized: true, sealed: true, token, unsealKey: randomBytes(32).toString('base64') };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://openbao');
    this.requests.push(`${req.method} ${url.pathname}`);
    try {
      const raw = await readBody(req);
      if (url.pathname === '/v1/sys/health') return this.health(url, res);
      if (this.latencyMs) await new Promise((resolve) => setTimeout(resolve, this.latencyMs));
      const method = req.method === 'PUT' ? 'POST' : (req.method ?? 'GET');
      const path = url.pathname.replace(/^\/v1\//, '');
      const list = method === 'GET' && parseBool(url.searchParams.get('list'));
      const answer = this.route(method, path, raw, req.headers['x-vault-token'], list);
      if (answer === undefined) res.writeHead(204).end();
      else send(res, 200, answer);
    } catch (error) {
      if (error instanceof VaultHttpError) send(res, error.status, { errors: error.errors });
      else send(res, 500, { errors: ['1 error occurred:\n\t* internal error\n\n'] });
    }
  }

  private health(url: URL, res: ServerResponse): void {
    const code = (param: string, fallback: number) => Number(url.searchParams.get(param) ?? fallback);
    const { initialized, sealed } = this.state;
    const standby = sealed || this.standby;
    const status = !initialized
      ? code('uninitcode', 501)
      : sealed
        ? code('sealedcode', 503)
        : this.standby && !parseBool(url.searchParams.get('standbyok'))
          ? code('standbycode', 429)
          : code('activecode', 200);
    send(res, status, {
      initialized,
      sealed,
      standby,
      performance_standby: false,
      server_time_utc: Math.floor(Date.now() / 1000),
      version: '2.2.0+double',
      cluster_name: 'openbao-double',
    });
  }

  /** Everything but health. Returns the JSON body of a 200, or undefined for 204. */
  private route(method: string, path: string, raw: string, token: unknown, list: boolean): unknown {
    const { initialized, sealed } = this.state;
    let body: Record<string, unknown> = {};
    const sealStatus = () => ({ type: 'shamir', initialized, sealed: this.state.sealed, t: 1, n: 1, progress: 0 });
    if (path === 'sys/init' && method === 'GET') return { initialized };
    if (path === 'sys/init' && method === 'POST') {
      body = parseJson(raw);
      if (initialized) throw new VaultHttpError(400, ['Vault is already initialized']);
      if (body.secret_shares !== 1 || body.secret_threshold !== 1) throw new VaultHttpError(400, ['this double keeps one key share']);
      this.initialize(`s.${randomBytes(12).toString('base64url')}`);
      const key = this.state.unsealKey;
      return { keys: [Buffer.from(key, 'base64').toString('hex')], keys_base64: [key], root_token: this.state.token };
    }
    if (path === 'sys/seal-status' && method === 'GET') return sealStatus();
    if (path === 'sys/unseal' && method === 'POST') {
      body = parseJson(raw);
      if (!initialized) throw new VaultHttpError(400, ['Vault is not initialized']);
      if (body.key !== this.state.unsealKey) throw new VaultHttpError(400, ['Unseal failed, invalid key']);
      this.state.sealed = false;
      return sealStatus();
    }
    if (!initialized || sealed) throw new VaultHttpError(503, ['Vault is sealed']);
    body = parseJson(raw);
    if (path === 'auth/approle/login' && method === 'POST') return this.login(body);
    if (token !== this.state.token) throw new VaultHttpError(403, ['permission denied']);
    if (path.startsWith('sys/') || path.startsWith('auth/')) return this.admin(method, path, body);
    for (const [mount, type] of this.mounts) {
      if (type !== 'transit' || !path.startsWith(mount)) continue;
      if (!this.engines.has(mount)) this.engines.set(mount, new TransitEngine());
      const below = path.slice(mount.length).split('/').map(decodeURIComponent);
      const data = this.engines.get(mount)!.handle(method, below, body, list);
      return data === undefined ? undefined : envelope(data);
    }
    throw new VaultHttpError(404, [`no handler for route "${path}"`]);
  }

  private login(body: Record<string, unknown>): unknown {
    const role = [...this.roles.values()].find((r) => r.roleId === body.role_id && r.secretIds.includes(String(body.secret_id)));
    if (!this.auths.has('approle/') || !role) throw new VaultHttpError(400, ['invalid role or secret ID']);
    return {
      ...envelope(null),
      auth: { client_token: this.state.token, accessor: randomUUID(), policies: ['default', 'coffer'], lease_duration: 3600, renewable: true },
    };
  }

  /** sys/mounts, sys/policies/acl, sys/auth and the AppRole role endpoints, with the root token. */
  private admin(method: string, path: string, body: Record<string, unknown>): unknown {
    const listed = (entries: Map<string, string>) => {
      const data = Object.fromEntries([...entries].map(([k, type]) => [k, { type }]));
      return { ...envelope(data), ...data };
    };
    const enable = (entries: Map<string, string>, name: string) => {
      if (entries.has(name)) throw new VaultHttpError(400, [`path is already in use at ${name}`]);
      entries.set(name, String(body.type));
      return undefined;
    };
    if (path === 'sys/mounts' && method === 'GET') return listed(this.mounts);
    if (path.startsWith('sys/mounts/') && method === 'POST') return enable(this.mounts, `${path.slice('sys/mounts/'.length)}/`);
    if (path === 'sys/auth' && method === 'GET') return listed(this.auths);
    if (path.startsWith('sys/auth/') && method === 'POST') return enable(this.auths, `${path.slice('sys/auth/'.length)}/`);
    if (path.startsWith('sys/policies/acl/') && method === 'POST') {
      this.policies.set(path.slice('sys/policies/acl/'.length), String(body.policy));
      return undefined;
    }
    const match = /^auth\/approle\/role\/([^/]+)(\/.*)?$/.exec(path);
    if (match && this.auths.has('approle/') && method === 'POST') {
      const [, name, sub] = match;
      if (!sub) {
        this.roles.set(name, { secretIds: [], ...this.roles.get(name), config: body });
        return undefined;
      }
      const role = this.roles.get(name);
      if (!role) throw new VaultHttpError(400, ['invalid role name']);
      if (sub === '/role-id') {
        role.roleId = String(body.role_id);
        return undefined;
      }
      if (sub === '/secret-id/lookup') {
        // An unknown secret id is a 204 with no body.
        return role.secretIds.includes(String(body.secret_id)) ? envelope({ secret_id_num_uses: 0 }) : undefined;
      }
      if (sub === '/custom-secret-id') {
        if (role.secretIds.includes(String(body.secret_id))) throw new VaultHttpError(400, ['SecretID is already registered']);
        role.secretIds.push(String(body.secret_id));
        return envelope({ secret_id: body.secret_id, secret_id_accessor: randomBytes(8).toString('hex') });
      }
    }
    throw new VaultHttpError(404, [`no handler for route "${path}"`]);
  }
}

function envelope(data: unknown): Record<string, unknown> {
  return { request_id: randomUUID(), lease_id: '', renewable: false, lease_duration: 0, data, wrap_info: null, warnings: null, auth: null };
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

/** Go's strconv.ParseBool, which Vault uses for `?list=` and `?standbyok=`. */
function parseBool(value: string | null): boolean {
  return value !== null && ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value);
}
