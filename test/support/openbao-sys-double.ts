import { randomBytes } from 'node:crypto';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';

/**
 * A double of the OpenBao / Vault administration API that `coffer init` drives: `sys/init`,
 * `sys/seal-status`, `sys/unseal`, `sys/health`, `sys/mounts`, `sys/policies/acl`, `sys/auth`
 * and the AppRole role endpoints, with Vault's paths, status codes and body shapes (public Vault
 * API documentation). A sealed or uninitialized server answers 503 to everything else; every
 * call but init, unseal and status needs the root token. State only; no transit here
 * (test/support/vault-transit-double.ts has it).
 */
export class OpenBaoSysDouble {
  readonly requests: string[] = [];
  initialized = false;
  sealed = true;
  rootToken = '';
  unsealKey = '';
  readonly mounts = new Map<string, string>([['sys/', 'system']]);
  readonly auths = new Map<string, string>([['token/', 'token']]);
  readonly policies = new Map<string, string>();
  readonly roles = new Map<string, { config: Record<string, unknown>; roleId?: string; secretIds: string[] }>();
  private server?: Server;

  get address(): string {
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** What a container restart does: the data stays, the server comes back sealed. */
  restart(): void {
    this.sealed = true;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
    const method = req.method === 'PUT' ? 'POST' : req.method!;
    const path = new URL(req.url!, 'http://bao').pathname.replace(/^\/v1\//, '');
    this.requests.push(`${req.method} ${path}`);
    const send = (status: number, payload?: unknown) => {
      if (payload === undefined) res.writeHead(status).end();
      else res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(payload));
    };
    const fail = (status: number, ...errors: string[]) => send(status, { errors });
    const sealStatus = () => ({ type: 'shamir', initialized: this.initialized, sealed: this.sealed, t: 1, n: 1, progress: 0 });

    if (path === 'sys/health') return send(!this.initialized ? 501 : this.sealed ? 503 : 200, { initialized: this.initialized, sealed: this.sealed });
    if (path === 'sys/init' && method === 'GET') return send(200, { initialized: this.initialized });
    if (path === 'sys/init' && method === 'POST') {
      if (this.initialized) return fail(400, 'Vault is already initialized');
      if (body.secret_shares !== 1 || body.secret_threshold !== 1) return fail(400, 'unexpected shares');
      this.initialized = true;
      this.unsealKey = randomBytes(32).toString('base64');
      this.rootToken = `s.${randomBytes(12).toString('base64url')}`;
      return send(200, { keys: [Buffer.from(this.unsealKey, 'base64').toString('hex')], keys_base64: [this.unsealKey], root_token: this.rootToken });
    }
    if (path === 'sys/seal-status') return send(200, sealStatus());
    if (path === 'sys/unseal' && method === 'POST') {
      if (body.key !== this.unsealKey) return fail(400, 'Unseal failed, invalid key');
      this.sealed = false;
      return send(200, sealStatus());
    }
    if (!this.initialized || this.sealed) return fail(503, 'Vault is sealed');
    if (req.headers['x-vault-token'] !== this.rootToken) return fail(403, 'permission denied');

    const data = (entries: Map<string, string>) => Object.fromEntries([...entries].map(([k, type]) => [k, { type }]));
    if (path === 'sys/mounts' && method === 'GET') return send(200, { ...data(this.mounts), data: data(this.mounts) });
    if (path.startsWith('sys/mounts/') && method === 'POST') {
      const name = `${path.slice('sys/mounts/'.length)}/`;
      if (this.mounts.has(name)) return fail(400, `path is already in use at ${name}`);
      this.mounts.set(name, body.type);
      return send(204);
    }
    if (path.startsWith('sys/policies/acl/') && method === 'POST') {
      this.policies.set(path.slice('sys/policies/acl/'.length), body.policy);
      return send(204);
    }
    if (path === 'sys/auth' && method === 'GET') return send(200, { ...data(this.auths), data: data(this.auths) });
    if (path.startsWith('sys/auth/') && method === 'POST') {
      const name = `${path.slice('sys/auth/'.length)}/`;
      if (this.auths.has(name)) return fail(400, `path is already in use at ${name}`);
      this.auths.set(name, body.type);
      return send(204);
    }
    const role = /^auth\/approle\/role\/([^/]+)(\/.*)?$/.exec(path);
    if (role && this.auths.has('approle/') && method === 'POST') {
      const [, name, sub] = role;
      if (!sub) {
        this.roles.set(name, { secretIds: [], ...this.roles.get(name), config: body });
        return send(204);
      }
      const entry = this.roles.get(name);
      if (!entry) return fail(400, 'invalid role name');
      if (sub === '/role-id') {
        entry.roleId = body.role_id;
        return send(204);
      }
      if (sub === '/secret-id/lookup') {
        // Vault answers an unknown secret id with 204 and no body.
        return entry.secretIds.includes(body.secret_id) ? send(200, { data: { secret_id_num_uses: 0 } }) : send(204);
      }
      if (sub === '/custom-secret-id') {
        if (entry.secretIds.includes(body.secret_id)) return fail(400, 'SecretID is already registered');
        entry.secretIds.push(body.secret_id);
        return send(200, { data: { secret_id: body.secret_id, secret_id_accessor: randomBytes(8).toString('hex') } });
      }
    }
    return fail(404, `no handler for route "${path}"`);
  }
}
