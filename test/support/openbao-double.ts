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
 * - every other call needs a live token in `X-Vault-Token`, else 403 `permission denied`: the
 *   root token, one `auth/token/create` made, or one an AppRole login handed out. A token that is
 *   not root is held to its ACL policies (`sys/policies/acl`, plus the built-in `default`), read
 *   as Vault reads them: `+` one segment, a trailing `*` any suffix, the most specific path wins,
 *   `allowed_parameters` on writes, `sudo` for `sys/auth/:path`; tokens expire at their TTL
 *   unless renewed (`auth/token/renew-self`), and `auth/token/revoke-self` ends one, root too;
 * - AppRole secret ids expire after `secret_id_ttl` (the role's, or `ttl` when generated): an
 *   expired one no longer logs in and its lookup answers 204, as if tidied;
 * - time is the double's clock (`advanceClock`), so a test sees expiry without waiting;
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
  secretIds: SecretId[];
}

/** An AppRole secret id: expiresAt in ms of the double's clock, none when its TTL is 0. */
export interface SecretId {
  id: string;
  accessor: string;
  createdAt: number;
  expiresAt?: number;
}

/** A token: policies (`root` for the root token), expiry in ms of the double's clock (none: never). */
export interface DoubleToken {
  id: string;
  accessor: string;
  policies: string[];
  ttlSeconds: number;
  periodSeconds?: number;
  expiresAt?: number;
  maxExpiresAt?: number;
  displayName: string;
}

interface Rule {
  path: string;
  capabilities: Set<string>;
  allowedParameters?: Map<string, unknown[]>;
}

/** Vault's built-in `default` policy, the part Coffer relies on: a token may look itself up, renew and revoke itself. */
const DEFAULT_POLICY = [
  'path "auth/token/lookup-self" { capabilities = ["read"] }',
  'path "auth/token/renew-self" { capabilities = ["update"] }',
  'path "auth/token/revoke-self" { capabilities = ["update"] }',
].join('\n');

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
  /** Live tokens by id (the root token among them once initialized). */
  readonly tokens = new Map<string, DoubleToken>();
  private clockOffsetMs = 0;
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
      // Not Coffer's own policy (`coffer init` writes that): everything, for tests of the login alone.
      this.policies.set('coffer-double-all', 'path "*" { capabilities = ["create", "read", "update", "delete", "list"] }');
      this.roles.set('coffer', {
        config: { token_policies: ['coffer-double-all'], token_ttl: '1h' },
        roleId: options.appRole.roleId,
        secretIds: [{ id: options.appRole.secretId, accessor: randomUUID(), createdAt: this.now() }],
      });
    }
  }

  /** The double's clock (ms): the wall clock moved by advanceClock(). */
  now(): number {
    return Date.now() + this.clockOffsetMs;
  }

  /** Moves the double's clock forward: tokens and secret ids whose time has come expire. */
  advanceClock(ms: number): void {
    this.clockOffsetMs += ms;
  }

  /** The secret ids of an AppRole that still log in. */
  liveSecretIds(role = 'coffer'): string[] {
    return (this.roles.get(role)?.secretIds ?? []).filter((s) => this.isLive(s.expiresAt)).map((s) => s.id);
  }

  /** Whether a token is known and not expired. */
  tokenLive(id: string): boolean {
    const token = this.tokens.get(id);
    return token !== undefined && this.isLive(token.expiresAt);
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
    this.tokens.set(token, { id: token, accessor: randomUUID(), policies: ['root'], ttlSeconds: 0, displayName: 'root' });
  }

  private isLive(expiresAt: number | undefined): boolean {
    return expiresAt === undefined || expiresAt > this.now();
  }

  /** A new token; `ttl` 0 with no period never expires (only root may ask for that). */
  private issueToken(policies: string[], ttlSeconds: number, options: { period?: number; max?: number; displayName: string }): DoubleToken {
    const id = `hvs.${randomBytes(18).toString('base64url')}`;
    const lifetime = options.period ?? ttlSeconds;
    const token: DoubleToken = {
      id,
      accessor: randomUUID(),
      policies,
      ttlSeconds,
      periodSeconds: options.period,
      expiresAt: lifetime ? this.now() + lifetime * 1000 : undefined,
      maxExpiresAt: options.max ? this.now() + options.max * 1000 : undefined,
      displayName: options.displayName,
    };
    this.tokens.set(id, token);
    return token;
  }

  /** The `auth` block of a login or token creation. */
  private authBlock(token: DoubleToken): Record<string, unknown> {
    return {
      ...envelope(null),
      auth: {
        client_token: token.id,
        accessor: token.accessor,
        policies: token.policies,
        token_policies: token.policies,
        lease_duration: token.expiresAt === undefined ? 0 : Math.round((token.expiresAt - this.now()) / 1000),
        renewable: token.expiresAt !== undefined,
        metadata: null,
        orphan: true,
      },
    };
  }

  /** The live token a request names, or 403 as Vault answers a bad, expired or missing one. */
  private tokenOf(header: unknown): DoubleToken {
    const token = typeof header === 'string' ? this.tokens.get(header) : undefined;
    if (!token || !this.isLive(token.expiresAt)) {
      if (token) this.tokens.delete(token.id);
      throw new VaultHttpError(403, ['permission denied']);
    }
    return token;
  }

  /**
   * Vault's ACL check for one request: the capability the request needs on the path, under the
   * rule of the token's policies (and `default`) that matches the path most specifically.
   */
  private authorize(token: DoubleToken, method: string, path: string, body: Record<string, unknown>, list: boolean): void {
    if (token.policies.includes('root')) return;
    const rules = [DEFAULT_POLICY, ...token.policies.map((name) => this.policies.get(name) ?? '')].flatMap(parsePolicy);
    const merged = new Map<string, Rule>();
    for (const rule of rules) {
      const known = merged.get(rule.path);
      if (!known) merged.set(rule.path, { ...rule, capabilities: new Set(rule.capabilities) });
      else for (const c of rule.capabilities) known.capabilities.add(c);
    }
    const rule = [...merged.values()].filter((r) => pathMatches(r.path, path)).sort(comparePriority).at(-1);
    const needs = method === 'GET' ? (list ? ['list'] : ['read']) : method === 'DELETE' ? ['delete'] : ['create', 'update'];
    const denied = () => new VaultHttpError(403, ['1 error occurred:\n\t* permission denied\n\n']);
    if (!rule || rule.capabilities.has('deny') || !needs.some((c) => rule.capabilities.has(c))) throw denied();
    if (method === 'POST' && /^sys\/auth\/.+/.test(path) && !rule.capabilities.has('sudo')) throw denied();
    if (rule.allowedParameters && (method === 'POST' || method === 'DELETE')) {
      const allowed = rule.allowedParameters;
      for (const [key, value] of Object.entries(body)) {
        const values = allowed.get(key) ?? allowed.get('*');
        if (!values) throw denied();
        if (values.length && !values.some((v) => v === value || v === '*')) throw denied();
      }
    }
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
      server_time_utc: Math.floor(this.now() / 1000),
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
    const caller = this.tokenOf(token);
    this.authorize(caller, method, path, body, list);
    if (path.startsWith('auth/token/')) return this.tokenEndpoint(caller, method, path, body);
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
    const role = [...this.roles.values()].find(
      (r) => r.roleId === body.role_id && r.secretIds.some((s) => s.id === String(body.secret_id) && this.isLive(s.expiresAt)),
    );
    if (!this.auths.has('approle/') || !role) throw new VaultHttpError(400, ['invalid role or secret ID']);
    const policies = ['default', ...listOf(role.config.token_policies)];
    const ttl = seconds(role.config.token_ttl) || 768 * 3600;
    return this.authBlock(this.issueToken(policies, ttl, { max: seconds(role.config.token_max_ttl) || undefined, displayName: 'approle' }));
  }

  /** auth/token/create, lookup-self, renew-self, revoke-self. */
  private tokenEndpoint(caller: DoubleToken, method: string, path: string, body: Record<string, unknown>): unknown {
    if (path === 'auth/token/create' && method === 'POST') {
      const policies = listOf(body.policies);
      const isRoot = caller.policies.includes('root');
      if (!isRoot && policies.some((p) => !caller.policies.includes(p))) {
        throw new VaultHttpError(400, ['child policies must be subset of parent']);
      }
      const period = seconds(body.period) || undefined;
      if (period && !isRoot) throw new VaultHttpError(400, ['root or sudo privileges required to create periodic token']);
      const ttl = seconds(body.ttl) || (period ? 0 : 768 * 3600);
      const all = body.no_default_policy === true ? policies : ['default', ...policies.filter((p) => p !== 'default')];
      return this.authBlock(this.issueToken(all, ttl, { period, displayName: `token-${String(body.display_name ?? '')}` }));
    }
    if (path === 'auth/token/lookup-self' && method === 'GET') {
      const ttl = caller.expiresAt === undefined ? 0 : Math.round((caller.expiresAt - this.now()) / 1000);
      return envelope({
        id: caller.id,
        accessor: caller.accessor,
        policies: caller.policies,
        ttl,
        period: caller.periodSeconds,
        expire_time: caller.expiresAt === undefined ? null : new Date(caller.expiresAt).toISOString(),
        display_name: caller.displayName,
        renewable: caller.expiresAt !== undefined,
      });
    }
    if (path === 'auth/token/renew-self' && method === 'POST') {
      if (caller.expiresAt === undefined) throw new VaultHttpError(400, ['lease is not renewable']);
      const increment = caller.periodSeconds ?? (seconds(body.increment) || caller.ttlSeconds);
      caller.expiresAt = Math.min(this.now() + increment * 1000, caller.maxExpiresAt ?? Infinity);
      return this.authBlock(caller);
    }
    if (path === 'auth/token/revoke-self' && method === 'POST') {
      this.tokens.delete(caller.id);
      return undefined;
    }
    throw new VaultHttpError(404, [`no handler for route "${path}"`]);
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
      const name = path.slice('sys/policies/acl/'.length);
      if (name === 'root' || name === 'default') throw new VaultHttpError(400, [`cannot update "${name}" policy`]);
      this.policies.set(name, String(body.policy));
      return undefined;
    }
    if (path.startsWith('sys/policies/acl/') && method === 'GET') {
      const name = path.slice('sys/policies/acl/'.length);
      const policy = this.policies.get(name);
      if (policy === undefined) throw new VaultHttpError(404, []);
      return envelope({ name, policy });
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
      // Expired secret ids are gone, as after Vault's tidy.
      role.secretIds = role.secretIds.filter((s) => this.isLive(s.expiresAt));
      const found = () => role.secretIds.find((s) => s.id === String(body.secret_id));
      if (sub === '/secret-id/lookup') {
        // An unknown (or expired) secret id is a 204 with no body.
        const secret = found();
        if (!secret) return undefined;
        return envelope({
          secret_id_accessor: secret.accessor,
          secret_id_num_uses: 0,
          secret_id_ttl: secret.expiresAt === undefined ? 0 : Math.round((secret.expiresAt - secret.createdAt) / 1000),
          creation_time: new Date(secret.createdAt).toISOString(),
          last_updated_time: new Date(secret.createdAt).toISOString(),
          expiration_time: secret.expiresAt === undefined ? '0001-01-01T00:00:00Z' : new Date(secret.expiresAt).toISOString(),
          metadata: {},
          cidr_list: [],
          token_bound_cidrs: [],
        });
      }
      if (sub === '/secret-id/destroy') {
        role.secretIds = role.secretIds.filter((s) => s.id !== String(body.secret_id));
        return undefined;
      }
      if (sub === '/custom-secret-id' || sub === '/secret-id') {
        const id = sub === '/secret-id' ? randomUUID() : String(body.secret_id);
        if (found() && sub === '/custom-secret-id') throw new VaultHttpError(400, ['SecretID is already registered']);
        const ttl = body.ttl !== undefined ? seconds(body.ttl) : seconds(role.config.secret_id_ttl);
        const secret: SecretId = { id, accessor: randomUUID(), createdAt: this.now(), expiresAt: ttl ? this.now() + ttl * 1000 : undefined };
        role.secretIds.push(secret);
        return envelope({ secret_id: id, secret_id_accessor: secret.accessor, secret_id_ttl: ttl, secret_id_num_uses: 0 });
      }
    }
    throw new VaultHttpError(404, [`no handler for route "${path}"`]);
  }
}

/**
 * The `path "..." { capabilities = [...] allowed_parameters = {...} }` blocks of an HCL policy,
 * the subset of the policy language Coffer writes (and Vault's own docs use).
 */
export function parsePolicy(hcl: string): Rule[] {
  const rules: Rule[] = [];
  for (const [, path, block] of hcl.matchAll(/path\s+"([^"]+)"\s*\{((?:[^{}]|\{[^{}]*\})*)\}/g)) {
    const capabilities = new Set([...(/capabilities\s*=\s*\[([^\]]*)\]/.exec(block)?.[1] ?? '').matchAll(/"([^"]+)"/g)].map((m) => m[1]));
    const allowed = /allowed_parameters\s*=\s*\{([^}]*)\}/.exec(block)?.[1];
    const allowedParameters = allowed === undefined
      ? undefined
      : new Map([...allowed.matchAll(/"([^"]+)"\s*=\s*\[([^\]]*)\]/g)].map(([, key, values]) => [key, JSON.parse(`[${values}]`) as unknown[]]));
    rules.push({ path, capabilities, allowedParameters });
  }
  return rules;
}

/** Vault's path match: `+` is one whole segment, a trailing `*` matches any suffix. */
function pathMatches(pattern: string, path: string): boolean {
  const glob = pattern.endsWith('*');
  const fixed = glob ? pattern.slice(0, -1) : pattern;
  const want = fixed.split('/');
  const got = path.split('/');
  if (glob ? got.length < want.length : got.length !== want.length) return false;
  return want.every((segment, i) => {
    if (segment === '+') return true;
    const last = i === want.length - 1;
    return glob && last ? got[i].startsWith(segment) : segment === got[i];
  });
}

/**
 * Vault's priority between two matching paths (docs: "policies", priority matching): the later
 * the first `+` or `*`, the higher; then no trailing `*` over one; fewer `+` segments; longer;
 * lexicographically greater. Sorts ascending: the winner is last.
 */
function comparePriority(a: Rule, b: Rule): number {
  const first = (p: string) => {
    const i = [p.indexOf('+'), p.indexOf('*')].filter((x) => x >= 0);
    return i.length ? Math.min(...i) : Infinity;
  };
  const plus = (p: string) => p.split('/').filter((s) => s === '+').length;
  return (
    first(a.path) - first(b.path) ||
    Number(!a.path.endsWith('*')) - Number(!b.path.endsWith('*')) ||
    plus(b.path) - plus(a.path) ||
    a.path.length - b.path.length ||
    (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)
  );
}

/** A policy list as Vault takes it: an array or a comma-separated string. */
function listOf(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String);
  if (typeof value === 'string' && value) return value.split(',').map((v) => v.trim());
  return [];
}

/** Vault's durations: seconds as a number or digits, or `<n>s|m|h` (summed: `1h30m`). */
function seconds(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value !== 'string' || !value) return 0;
  if (/^\d+$/.test(value)) return Number(value);
  const units: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };
  let total = 0;
  for (const [, n, unit] of value.matchAll(/(\d+)([smhd])/g)) total += Number(n) * units[unit];
  return total;
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
