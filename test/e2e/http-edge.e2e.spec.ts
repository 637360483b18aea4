import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { LOGGER, Logger } from '@coffer/logging';
import { OrgRegistry } from '@coffer/tenancy';
import { PlainHttpListener } from '@coffer/tls';
import { createApi } from '../../apps/api/src/bootstrap';
import { migrateInstallation } from '../../apps/cli/src/migrate';
import type { TestOrg } from '../support/client';
import { TestWorld } from '../support/world';
import { createTestEnv, TestEnv } from '../support/test-env';

/**
 * Requests as curl or a hostile client would send them, byte for byte, on a socket of their own
 * (plain or TLS): what the edge of the API answers to malformed, odd or abandoned requests.
 */

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  text: string;
  body: any;
}

/** Sends `bytes` on a new connection and reads until the server closes it (send `Connection: close`). */
function exchange(url: string, bytes: string | Buffer | (string | Buffer)[], options: { ca?: Buffer; pauseMs?: number } = {}): Promise<Buffer> {
  const { hostname, port, protocol } = new URL(url);
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const socket: Socket =
      protocol === 'https:'
        ? tlsConnect({ host: hostname, port: Number(port), ca: options.ca, servername: 'localhost' }, () => void send())
        : netConnect({ host: hostname, port: Number(port) }, () => void send());
    const pieces = Array.isArray(bytes) ? bytes : [bytes];
    async function send() {
      for (const [i, piece] of pieces.entries()) {
        if (i > 0 && options.pauseMs) await new Promise((r) => setTimeout(r, options.pauseMs));
        socket.write(piece);
      }
    }
    socket.on('data', (d: Buffer) => parts.push(d));
    socket.on('close', () => resolve(Buffer.concat(parts)));
    socket.on('error', (error: NodeJS.ErrnoException) => (parts.length ? resolve(Buffer.concat(parts)) : reject(error)));
    socket.setTimeout(15_000, () => socket.destroy(new Error('no answer in 15 s')));
  });
}

/** Every HTTP/1.1 response in `raw`, in order (pipelined answers included). */
function parseResponses(raw: Buffer): RawResponse[] {
  const responses: RawResponse[] = [];
  let rest = raw;
  while (rest.length) {
    const end = rest.indexOf('\r\n\r\n');
    assert.ok(end > 0, `an incomplete response: ${rest.toString('latin1').slice(0, 200)}`);
    const [statusLine, ...lines] = rest.subarray(0, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1]);
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    let body: Buffer;
    rest = rest.subarray(end + 4);
    if (headers['transfer-encoding'] === 'chunked') {
      const chunks: Buffer[] = [];
      for (;;) {
        const lineEnd = rest.indexOf('\r\n');
        const size = parseInt(rest.subarray(0, lineEnd).toString(), 16);
        rest = rest.subarray(lineEnd + 2);
        if (size === 0) {
          rest = rest.subarray(rest.indexOf('\r\n') + 2);
          break;
        }
        chunks.push(rest.subarray(0, size));
        rest = rest.subarray(size + 2);
      }
      body = Buffer.concat(chunks);
    } else {
      const length = Number(headers['content-length'] ?? rest.length);
      body = rest.subarray(0, length);
      rest = rest.subarray(length);
    }
    const text = body.toString('utf8');
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    responses.push({ status, headers, text, body: parsed });
  }
  return responses;
}

async function rawRequest(url: string, bytes: string | Buffer | (string | Buffer)[], options: { ca?: Buffer; pauseMs?: number } = {}) {
  const responses = parseResponses(await exchange(url, bytes, options));
  assert.equal(responses.length, 1, `one answer, got ${responses.length}`);
  return responses[0];
}

/** A request head, `Connection: close` so that the server ends the exchange. */
function head(method: string, path: string, headers: Record<string, string | number> = {}): string {
  const lines = Object.entries({ host: 'localhost', connection: 'close', ...headers }).map(([k, v]) => `${k}: ${v}\r\n`);
  return `${method} ${path} HTTP/1.1\r\n${lines.join('')}\r\n`;
}

/** The documented error shape, the request id of the response, a stable code and nothing of the framework. */
function assertErrorShape(res: RawResponse, status: number, code: string) {
  assert.equal(res.status, status, res.text);
  assert.deepEqual(Object.keys(res.body ?? {}), ['error'], res.text);
  assert.equal(res.body.error.code, code, res.text);
  assert.equal(typeof res.body.error.message, 'string');
  assert.match(res.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
  assert.equal(res.body.error.requestId, res.headers['x-request-id']);
  assert.doesNotMatch(res.text, /FST_|statusCode|"Bad Request"/);
}

type Entry = {
  seq: number;
  action: string;
  outcome: string;
  actor: Record<string, string>;
  target: Record<string, unknown> | null;
  requestId: string | null;
  body: Record<string, any>;
};

describe('the edge of the API: path parameters, bodies, versions, uploads (Fastify, PostgreSQL, Redis)', () => {
  let api: TestWorld;
  let a: TestOrg;
  let b: TestOrg;
  let member: { userId: string; keyId: string; token: string };
  const logged: { level: string; fields: Record<string, unknown>; msg: string }[] = [];

  before(async () => {
    api = await TestWorld.start();
    [a, b] = [await api.createOrg(), await api.createOrg()];
    member = await api.addUser(a, 'member');
    // What the API logs, level by level (the test config logs nothing otherwise).
    const logger = api.app.get<Logger>(LOGGER) as unknown as Record<string, unknown>;
    for (const level of ['info', 'warn', 'error']) {
      logger[level] = (fields: Record<string, unknown>, msg: string) => logged.push({ level, fields, msg });
    }
  });

  after(() => api?.stop());

  const as = (token: string) => ({ authorization: `Bearer ${token}` });
  const send = (bytes: string | Buffer | (string | Buffer)[], pauseMs?: number) => rawRequest(api.url, bytes, { pauseMs });

  /** Every entry of a chain with that request id: an org's (read with its admin key) or the control plane's. */
  async function entriesOf(chain: TestOrg | 'control', requestId: string): Promise<Entry[]> {
    const path = chain === 'control' ? '/api/v1/admin/audit-logs?limit=1000' : `/api/v1/organizations/${chain.slug}/audit-logs?limit=1000`;
    const res = await api.http().get(path).set(as(chain === 'control' ? api.adminToken : chain.adminToken));
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return (res.body.entries as Entry[]).filter((e) => e.requestId === requestId);
  }

  async function verified(chain: TestOrg | 'control') {
    const path = chain === 'control' ? '/api/v1/admin/audit-logs/verify' : `/api/v1/organizations/${chain.slug}/audit-logs/verify`;
    const res = await api.http().get(path).set(as(chain === 'control' ? api.adminToken : chain.adminToken));
    assert.equal(res.status, 200);
    return res.body.valid as boolean;
  }

  test('a control character in any path parameter: 400 invalid_path_parameter, exactly one failure entry in the caller\'s own chain, escaped; the chains verify', async () => {
    const upload = (path: string, token: string) => head('PUT', path, { authorization: `Bearer ${token}`, 'content-type': 'text/plain', 'content-length': 5 }) + 'hello';
    const cases: { what: string; request: string; chain: TestOrg | 'control'; action: string; escaped: Record<string, string> }[] = [
      { what: 'read users/:userId', request: head('GET', `/api/v1/organizations/${a.slug}/users/%00`, as(a.adminToken)), chain: a, action: 'user.viewed', escaped: { userId: '\\u0000' } },
      { what: 'mutation api-keys/:keyId', request: head('DELETE', `/api/v1/organizations/${a.slug}/api-keys/x%00y`, as(a.adminToken)), chain: a, action: 'api_key.revoked', escaped: { keyId: 'x\\u0000y' } },
      { what: 'read packages/:name', request: head('GET', `/api/v1/organizations/${a.slug}/packages/%00`, as(a.adminToken)), chain: a, action: 'GET /api/v1/organizations/:org/packages/:name', escaped: { name: '\\u0000' } },
      { what: 'upload packages/:name', request: upload(`/api/v1/organizations/${a.slug}/packages/doc%00`, a.adminToken), chain: a, action: 'package.version_created', escaped: { name: 'doc\\u0000' } },
      { what: 'read pending-writes/:id', request: head('GET', `/api/v1/organizations/${a.slug}/pending-writes/%1b%5b2J`, as(a.adminToken)), chain: a, action: 'GET /api/v1/organizations/:org/pending-writes/:id', escaped: { id: '\\u001b[2J' } },
      { what: 'the org slug, an org user', request: head('GET', '/api/v1/organizations/%00', as(a.adminToken)), chain: a, action: 'GET /api/v1/organizations/:org', escaped: { org: '\\u0000' } },
      { what: "another org's route, an org user", request: head('GET', `/api/v1/organizations/${b.slug}/users/%00`, as(a.adminToken)), chain: a, action: 'user.viewed', escaped: { org: b.slug, userId: '\\u0000' } },
      { what: 'a member, denied anyway', request: head('DELETE', `/api/v1/organizations/${a.slug}/api-keys/%7f`, as(member.token)), chain: a, action: 'api_key.revoked', escaped: { keyId: '\\u007f' } },
      { what: 'the org slug, the platform admin', request: head('GET', '/api/v1/organizations/%00/users', as(api.adminToken)), chain: 'control', action: 'users.listed', escaped: { org: '\\u0000' } },
      { what: 'a mutation, the platform admin', request: head('POST', '/api/v1/organizations/%00/users', { ...as(api.adminToken), 'content-type': 'application/json', 'content-length': 2 }) + '{}', chain: 'control', action: 'user.created', escaped: { org: '\\u0000' } },
      { what: 'admin/certificates/:id/renew', request: head('POST', '/api/v1/admin/certificates/%00/renew', as(api.adminToken)), chain: 'control', action: 'certificate.renewal_requested', escaped: { id: '\\u0000' } },
    ];
    for (const { what, request, chain, action, escaped } of cases) {
      const res = await send(request);
      assertErrorShape(res, 400, 'invalid_path_parameter');
      const requestId = res.headers['x-request-id'];
      const own = await entriesOf(chain, requestId);
      const others = await Promise.all([a, b, 'control' as const].filter((c) => c !== chain).map((c) => entriesOf(c, requestId)));
      assert.equal(own.length, 1, `${what}: one entry in its chain`);
      assert.deepEqual(others.flat(), [], `${what}: no entry elsewhere`);
      const [entry] = own;
      assert.deepEqual([entry.action, entry.outcome, entry.body.error], [action, 'failure', { code: 'invalid_path_parameter', status: 400 }], what);
      for (const [name, value] of Object.entries(escaped)) assert.equal(entry.target?.[name], value, `${what}: ${name}`);
      for (const value of Object.values(entry.target ?? {})) {
        if (typeof value === 'string') assert.doesNotMatch(value, /[\u0000-\u001f\u007f-\u009f]/, `${what}: nothing raw`);
      }
      assert.equal(entry.actor.kind, chain === 'control' ? 'platform_admin' : 'user', what);
    }

    // No credentials: 401 first, and no entry, as for every 401. A public route: refused, not audited.
    const anonymous = await send(head('GET', `/api/v1/organizations/${a.slug}/users/%00`));
    assertErrorShape(anonymous, 401, 'unauthenticated');
    const link = await send(head('GET', '/api/v1/assets/%00'));
    assertErrorShape(link, 400, 'invalid_path_parameter');
    for (const res of [anonymous, link]) {
      for (const chain of [a, b, 'control' as const]) assert.deepEqual(await entriesOf(chain, res.headers['x-request-id']), []);
    }
    for (const chain of [a, b, 'control' as const]) assert.equal(await verified(chain), true);
    assert.deepEqual(logged.filter((l) => l.level === 'error'), [], 'nothing failed unexpectedly');
  });

  test('the OpenAPI Error schema lists the codes of the edge', async () => {
    const res = await api.http().get('/api/v1/openapi.json');
    const codes: string[] = res.body.components.schemas.Error.properties.error.properties.code.enum;
    for (const code of ['invalid_path_parameter', 'bad_request', 'uri_too_long', 'header_too_large', 'request_timeout', 'unsupported_content_encoding', 'client_closed_request']) {
      assert.ok(codes.includes(code), code);
    }
    const get = res.body.paths['/api/v1/organizations/{org}/users/{userId}'].get;
    assert.match(get.responses['400'].description, /invalid_path_parameter/);
  });

  test('empty bodies: accepted whatever their Content-Type where no body is taken; a route that takes one answers 400', async () => {
    const chunkedEmpty = (method: string, path: string, type: string) =>
      head(method, path, { ...as(a.adminToken), 'content-type': type, 'transfer-encoding': 'chunked' }) + '0\r\n\r\n';
    const declaredEmpty = (method: string, path: string, type: string) => head(method, path, { ...as(a.adminToken), 'content-type': type, 'content-length': 0 });
    const base = `/api/v1/organizations/${a.slug}`;

    const rotated = await send(declaredEmpty('POST', `${base}/keys/rotate`, 'application/json'));
    assert.equal(rotated.status, 200, rotated.text);
    const again = await send(chunkedEmpty('POST', `${base}/keys/rotate`, 'application/json; charset=utf-8'));
    assert.equal(again.status, 200, again.text);
    const victim = await api.addUser(a, 'member');
    const disabled = await send(declaredEmpty('POST', `${base}/users/${victim.userId}/disable`, 'text/plain'));
    assert.deepEqual([disabled.status, disabled.body.user.disabled], [200, true], disabled.text);
    const revoked = await send(chunkedEmpty('POST', `${base}/asset-links/revoke`, 'application/x-www-form-urlencoded'));
    assert.equal(revoked.status, 200, revoked.text);
    const key = await send(declaredEmpty('DELETE', `${base}/api-keys/${victim.keyId}`, 'application/json'));
    assert.deepEqual([key.status, key.body.apiKey.status], [200, 'revoked'], key.text);
    const odd = await send(declaredEmpty('POST', `${base}/keys/rotate`, 'not a media type'));
    assert.equal(odd.status, 200, odd.text);

    // A route that takes a JSON body needs one, however it is (not) announced.
    for (const request of [
      declaredEmpty('POST', `${base}/users`, 'application/json'),
      chunkedEmpty('POST', `${base}/users`, 'application/json'),
      head('POST', `${base}/users`, as(a.adminToken)),
      declaredEmpty('POST', `${base}/users/${member.userId}/api-keys`, 'application/json'),
    ]) {
      assertErrorShape(await send(request), 400, 'invalid_json');
    }
    // A body of a type no route parses is still 415, chunked or not.
    const text = await send(head('POST', `${base}/keys/rotate`, { ...as(a.adminToken), 'content-type': 'text/plain', 'content-length': 5 }) + 'hello');
    assertErrorShape(text, 415, 'unsupported_media_type');
    const chunkedText = await send(head('POST', `${base}/keys/rotate`, { ...as(a.adminToken), 'content-type': 'text/plain', 'transfer-encoding': 'chunked' }) + '5\r\nhello\r\n0\r\n\r\n');
    assertErrorShape(chunkedText, 415, 'unsupported_media_type');
  });

  test('U+0000 in any JSON string or key: 400 validation_failed before anything is written (no org, not even provisioning; no user)', async () => {
    const admin = (slug: string) => ({ email: `root@${slug}.example`, displayName: 'Root' });
    const orgs = [
      { slug: 'nul-name', name: 'a\u0000b', admin: admin('nul-name') },
      { slug: 'nul-admin', name: 'Fine', admin: { ...admin('nul-admin'), displayName: 'R\u0000oot' } },
      { slug: 'nul-key', name: 'Fine', admin: admin('nul-key'), ['ext\u0000ra']: true },
    ];
    for (const body of orgs) {
      const res = await api.http().post('/api/v1/organizations').set(as(api.adminToken)).send(body);
      assert.deepEqual([res.status, res.body.error?.code], [400, 'validation_failed'], JSON.stringify(res.body));
      assert.match(JSON.stringify(res.body.error.details), /U\+0000/);
    }
    const registered = (await api.app.get(OrgRegistry).list()).map((o: { slug: string }) => o.slug);
    for (const { slug } of orgs) assert.ok(!registered.includes(slug), `${slug} was registered`);

    const users = `/api/v1/organizations/${a.slug}/users`;
    const count = async () => (await api.http().get(users).set(as(a.adminToken))).body.users.length;
    const before = await count();
    for (const body of [
      { email: 'nul@a.example', displayName: 'a\u0000b', role: 'member' },
      { email: 'nul\u0000@a.example', displayName: 'N', role: 'member' },
    ]) {
      const res = await api.http().post(users).set(as(a.adminToken)).send(body);
      assert.deepEqual([res.status, res.body.error?.code], [400, 'validation_failed'], JSON.stringify(res.body));
    }
    const keyName = await api.http().post(`${users}/${member.userId}/api-keys`).set(as(a.adminToken)).send({ name: 'k\u0000' });
    assert.deepEqual([keyName.status, keyName.body.error?.code], [400, 'validation_failed']);
    assert.equal(await count(), before, 'no user was written');
    assert.equal(await verified(a), true);
  });

  test('Content-Encoding on a JSON route: 415 unsupported_content_encoding; identity is fine', async () => {
    const body = JSON.stringify({ email: 'gz@a.example', displayName: 'Gz', role: 'member' });
    const path = `/api/v1/organizations/${a.slug}/users`;
    for (const [encoding, bytes] of [['gzip', gzipSync(body)], ['br', Buffer.from(body)], ['gzip, identity', gzipSync(body)]] as const) {
      const res = await send([head('POST', path, { ...as(a.adminToken), 'content-type': 'application/json', 'content-encoding': encoding, 'content-length': bytes.length }), bytes]);
      assertErrorShape(res, 415, 'unsupported_content_encoding');
      assert.equal(res.headers['accept-encoding'], 'identity');
    }
    const plain = await send(head('POST', path, { ...as(a.adminToken), 'content-type': 'application/json', 'content-encoding': 'identity', 'content-length': Buffer.byteLength(body) }) + body);
    assert.equal(plain.status, 201, plain.text);
  });

  test("an upload's Content-Type must be a media type of at most 255 characters; a valid one is kept", async () => {
    const path = `/api/v1/organizations/${a.slug}/packages/typed`;
    const put = (type: string) => send(head('PUT', path, { ...as(a.adminToken), 'content-type': type, 'content-length': 5 }) + 'hello');
    for (const bad of ['x'.repeat(3000), `text/${'x'.repeat(251)}`, 'garbage', 'text/plain; charset', 'text/plain, text/html']) {
      const res = await put(bad);
      assertErrorShape(res, 400, 'validation_failed');
      assert.ok(!res.text.includes(bad), 'the type is not echoed');
    }
    assert.equal((await api.http().get(path).set(as(a.adminToken))).status, 404, 'nothing was stored');
    const good = await put('text/markdown; charset="utf-8"');
    assert.equal(good.status, 201, good.text);
    const content = await api.http().get(`${path}/versions/1/content`).set(as(a.adminToken));
    assert.deepEqual([content.status, content.headers['content-type']], [200, 'text/markdown; charset="utf-8"']);
  });

  test('version numbers are canonical decimal integers: 1e0, 0x2, 02, " 2" and the like are 400 validation_failed', async () => {
    const base = `/api/v1/organizations/${a.slug}/packages/versioned`;
    for (const content of ['one', 'two']) {
      const res = await send(head('PUT', base, { ...as(a.adminToken), 'content-type': 'text/plain', 'content-length': content.length }) + content);
      assert.equal(res.status, 201, res.text);
    }
    for (const version of ['1e0', '0x2', '02', '%202', '2%20', '+1', '2.0', '0', '-1', '2147483648', '1_0']) {
      for (const [method, suffix] of [['GET', '/content'], ['POST', '/links'], ['DELETE', '']]) {
        const headers = method === 'POST' ? { ...as(a.adminToken), 'content-type': 'application/json', 'content-length': 2 } : as(a.adminToken);
        const res = await send(head(method, `${base}/versions/${version}${suffix}`, headers) + (method === 'POST' ? '{}' : ''));
        assertErrorShape(res, 400, 'validation_failed');
      }
    }
    const two = await api.http().get(`${base}/versions/2/content`).set(as(a.adminToken));
    assert.deepEqual([two.status, two.text], [200, 'two']);
    const listed = await api.http().get(base).set(as(a.adminToken));
    assert.deepEqual(listed.body.versions.map((v: { version: number }) => v.version).sort(), [1, 2], 'nothing was deleted');
  });

  test('a client aborting an upload: client_closed_request (499) in the audit entry and the access log, a warn line, no stack', async () => {
    const path = `/api/v1/organizations/${a.slug}/packages/abandoned`;
    const { port } = new URL(api.url);
    const socket = netConnect({ host: '127.0.0.1', port: Number(port) });
    await new Promise((r) => socket.once('connect', r));
    socket.write(head('PUT', path, { ...as(a.adminToken), 'content-type': 'application/octet-stream', 'content-length': 10_000_000 }));
    socket.write(Buffer.alloc(256 * 1024, 7));
    await new Promise((r) => setTimeout(r, 500));
    socket.destroy();

    let failure: Entry | undefined;
    for (let i = 0; i < 100 && !failure; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const res = await api.http().get(`/api/v1/organizations/${a.slug}/audit-logs?action=package.version_created&outcome=failure&limit=1000`).set(as(a.adminToken));
      failure = (res.body.entries as Entry[]).find((e) => e.target?.name === 'abandoned');
    }
    assert.ok(failure, 'the failed upload has its entry');
    assert.deepEqual(failure.body.error, { code: 'client_closed_request', status: 499 });
    const lines = logged.filter((l) => l.fields?.requestId === failure!.requestId);
    assert.deepEqual(lines.filter((l) => l.level === 'error'), [], 'no error line');
    const warn = lines.find((l) => l.level === 'warn' && l.msg === 'client closed the request before it completed');
    assert.ok(warn, JSON.stringify(lines));
    assert.ok(!JSON.stringify(warn).includes('stack'));
    const access = lines.filter((l) => l.msg === 'request');
    assert.deepEqual(access.map((l) => [l.level, l.fields.status, l.fields.route]), [['info', 499, '/api/v1/organizations/:org/packages/:name']]);
    assert.equal((await api.http().get(path).set(as(a.adminToken))).status, 404, 'no version was committed');
  });
});

describe('the edge of the API over TLS: what fails below Nest still answers in the error shape, with the security headers', () => {
  let env: TestEnv;
  let app: NestFastifyApplication;
  let url: string;
  let ca: Buffer;
  let dir: string;
  let closed = false;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coffer-http-edge-'));
    env = await createTestEnv({ TLS_MODE: 'internal-ca', TLS_DIR: join(dir, 'tls') });
    await migrateInstallation(env.config);
    app = await createApi(env.config);
    await app.listen({ host: '127.0.0.1', port: 0 });
    url = (await app.getUrl()).replace(/^http:/, 'https:');
    ca = readFileSync(join(dir, 'tls', 'ca.crt'));
  });

  after(async () => {
    if (!closed) await app?.close();
    await env?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const SECURITY_HEADERS = {
    'strict-transport-security': 'max-age=31536000; includeSubDomains',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
  };
  function assertSecured(res: RawResponse) {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) assert.equal(res.headers[name], value, `${name} on ${res.status}`);
    assert.match(res.headers['content-security-policy'] ?? '', /default-src 'none'/);
  }
  const send = (bytes: string | Buffer | (string | Buffer)[]) => rawRequest(url, bytes, { ca });

  test('a URL that does not decode: 400 bad_request', async () => {
    const res = await send(head('GET', '/api/v1/organizations/%FF'));
    assertErrorShape(res, 400, 'bad_request');
    assertSecured(res);
    assert.ok(!res.text.includes('%FF') && !res.text.includes('organizations'), res.text);
  });

  test('an overlong path parameter: 414 uri_too_long, the URL not echoed', async () => {
    const res = await send(head('GET', `/api/v1/assets/${'a'.repeat(1100)}`));
    assertErrorShape(res, 414, 'uri_too_long');
    assertSecured(res);
    assert.ok(!res.text.includes('aaaaaaaa'), res.text);
  });

  test('a 20 KB header, or a 20 KB URL: 431 header_too_large', async () => {
    for (const request of [head('GET', '/health/live', { 'x-big': 'b'.repeat(20_000) }), head('GET', `/api/v1/${'u'.repeat(20_000)}`)]) {
      const res = await send(request);
      assertErrorShape(res, 431, 'header_too_large');
      assertSecured(res);
      assert.ok(!res.text.includes('bbbbbbbb') && !res.text.includes('uuuuuuuu'));
    }
  });

  test('a malformed request line, or conflicting Content-Length and Transfer-Encoding: 400 bad_request', async () => {
    for (const request of [
      'GET /health/live HTTP/1.1 and more\r\nhost: localhost\r\n\r\n',
      'BR@KEN\r\n\r\n',
      head('POST', '/api/v1/organizations', { 'content-type': 'application/json', 'content-length': 2, 'transfer-encoding': 'chunked' }) + '0\r\n\r\n',
      'GET /health/live HTTP/1.1\r\nhost: localhost\r\nbad header\r\n\r\n',
    ]) {
      const res = await send(request);
      assertErrorShape(res, 400, 'bad_request');
      assertSecured(res);
    }
  });

  test('the plain-HTTP listener (redirects, ACME challenges) answers what Node cannot parse in the error shape too', async () => {
    const plain = await app.get(PlainHttpListener).listen('127.0.0.1', 0);
    for (const request of ['BR@KEN\r\n\r\n', 'GET / HTTP/1.1\r\nhost: localhost\r\nbad header\r\n\r\n']) {
      const res = await rawRequest(plain, request);
      assertErrorShape(res, 400, 'bad_request');
    }
  });

  test('an invalid Content-Type: 415 in the error shape, nothing echoed', async () => {
    const res = await send(head('POST', '/api/v1/organizations', { 'content-type': 'evil;;;<script>', 'content-length': 2 }) + '{}');
    assertErrorShape(res, 415, 'unsupported_media_type');
    assertSecured(res);
    assert.ok(!res.text.includes('evil'));
  });

  test('a request arriving while the server closes: 503 service_unavailable in the error shape (last: it closes the app)', async () => {
    const fastify = app.getHttpAdapter().getInstance() as FastifyInstance;
    const { hostname, port } = new URL(url);
    const socket = tlsConnect({ host: hostname, port: Number(port), ca, servername: 'localhost' });
    const parts: Buffer[] = [];
    socket.on('data', (d: Buffer) => parts.push(d));
    const ended = new Promise((r) => socket.once('close', r));
    await new Promise((r) => socket.once('secureConnect', r));
    // A request under way (its body not sent yet) keeps the connection out of the idle ones closed first.
    socket.write('POST /api/v1/organizations HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n');
    await new Promise((r) => setTimeout(r, 300));
    closed = true;
    const closing = app.close();
    for (let i = 0; i < 100 && fastify.server.listening; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(fastify.server.listening, false);
    // The rest of the first request, and a second one pipelined behind it.
    socket.write('{}GET /health/live HTTP/1.1\r\nhost: localhost\r\n\r\n');
    await ended;
    await closing;
    const [first, second] = parseResponses(Buffer.concat(parts));
    assertErrorShape(first, 401, 'unauthenticated');
    assertErrorShape(second, 503, 'service_unavailable');
    assertSecured(second);
    assert.equal(second.headers.connection, 'close');
  });
});
