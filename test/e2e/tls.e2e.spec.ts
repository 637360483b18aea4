import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { JobsService } from '@coffer/jobs';
import { ChallengeStore, InternalCaRepository, PlainHttpListener } from '@coffer/tls';
import { createApi } from '../../apps/api/src/bootstrap';
import { migrateInstallation } from '../../apps/cli/src/migrate';
import { startApiProcess, stopProcess } from '../support/api-process';
import { connect, createTestEnv, TestEnv } from '../support/test-env';

/** `openssl s_client` against the API port; `args` choose protocol, ciphers, verification. */
function sClient(url: string, args: string[], input = ''): { status: number | null; out: string } {
  const { host } = new URL(url);
  const result = spawnSync('openssl', ['s_client', '-connect', host, ...args], { input, encoding: 'utf8', timeout: 15_000 });
  return { status: result.status, out: `${result.stdout}\n${result.stderr}` };
}

/** What s_client says it negotiated ("New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256"). */
function negotiated(out: string): { protocol: string; cipher: string } | undefined {
  const match = /^New, (TLSv[\d.]+), Cipher is (\S+)/m.exec(out);
  return match ? { protocol: match[1], cipher: match[2] } : undefined;
}

/** The serial of the certificate the server presents now, verified against `ca`. */
function servedSerial(url: string, ca: Buffer): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: hostname, port: Number(port), ca }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.end();
    });
    socket.once('error', reject);
  });
}

/** A raw HTTP/1.1 request, so the Host header is the test's choice (fetch forbids setting it). */
function plainRequest(url: string, method: string, host?: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers: host ? { host } : {} }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.once('error', reject);
    req.end();
  });
}

const SECURITY_HEADERS = {
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

describe('TLS on the wire: the API process (main.js) with an internal-CA certificate, probed by openssl s_client and HTTPS clients', () => {
  let env: TestEnv;
  let api: ChildProcess;
  let url: string;
  let httpUrl: string;
  let ca: Buffer;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coffer-tls-'));
    env = await createTestEnv({ TLS_MODE: 'internal-ca', TLS_DIR: join(dir, 'tls'), HTTP_BODY_LIMIT_BYTES: '4096' });
    await migrateInstallation(env.config);
    ({ child: api, url, httpUrl } = await startApiProcess(env.config));
    ca = readFileSync(join(dir, 'tls', 'ca.crt'));
  });

  after(async () => {
    await stopProcess(api);
    await env?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('refuses TLS 1.0 and 1.1 even from a client that offers every cipher', () => {
    for (const version of ['-tls1', '-tls1_1']) {
      const { status, out } = sClient(url, [version, '-cipher', 'DEFAULT@SECLEVEL=0']);
      assert.notEqual(status, 0, `${version} connected:\n${out}`);
      assert.equal(negotiated(out), undefined);
      assert.match(out, /alert protocol version/, `the server, not the client, refuses:\n${out}`);
    }
  });

  test('TLS 1.2 and 1.3 connect, the chain verifies against the reported CA (IP checked), without compression', () => {
    for (const [version, protocol] of [['-tls1_2', 'TLSv1.2'], ['-tls1_3', 'TLSv1.3']]) {
      const { status, out } = sClient(url, [version, '-CAfile', join(dir, 'tls', 'ca.crt'), '-verify_return_error', '-verify_ip', '127.0.0.1']);
      assert.equal(status, 0, out);
      assert.equal(negotiated(out)?.protocol, protocol, out);
      assert.match(out, /Verify return code: 0 \(ok\)/);
      assert.match(out, /Compression: NONE/);
    }
    const { out } = sClient(url, ['-CAfile', join(dir, 'tls', 'ca.crt')]);
    assert.equal(negotiated(out)?.protocol, 'TLSv1.3', 'a client offering both gets TLS 1.3');
  });

  test('TLS 1.2 only with ECDHE and AEAD: CBC and static-RSA cipher suites are refused', () => {
    const good = sClient(url, ['-tls1_2']);
    assert.match(negotiated(good.out)?.cipher ?? '', /^ECDHE-[A-Z]+-(AES\d+-GCM|CHACHA20-POLY1305)/, good.out);
    for (const cipher of ['ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA384', 'AES128-GCM-SHA256', 'AES128-SHA']) {
      const { status, out } = sClient(url, ['-tls1_2', '-cipher', `${cipher}@SECLEVEL=0`]);
      assert.notEqual(status, 0, `${cipher} was accepted:\n${out}`);
    }
  });

  test('refuses renegotiation on TLS 1.2 (TLS 1.3 has none)', () => {
    // "R" on s_client's stdin asks for a renegotiation on the open connection.
    const { out } = sClient(url, ['-tls1_2'], 'R\n');
    assert.match(out, /RENEGOTIATING/, out);
    assert.match(out, /no renegotiation/, out);
  });

  test('HSTS and the security headers are on 200, 401, 404, 413 and 500 responses', async () => {
    const http = () => request(url);
    const responses = {
      200: await http().get('/health/live').ca(ca),
      401: await http().get('/api/v1/organizations').ca(ca),
      404: await http().get('/api/v1/nowhere').ca(ca),
      413: await http().post('/api/v1/organizations').ca(ca).send({ slug: 'big', name: 'x'.repeat(5000) }),
    };
    // A real failure: the app role loses its read grant on the platform tokens (this test's own
    // database), so authenticating the admin throws a permission error, which becomes a 500.
    const owner = await connect(env.config.DATABASE_OWNER_URL);
    const token = env.takeBootstrapToken();
    try {
      await owner.query(`REVOKE SELECT ON platform_admin_tokens FROM "${env.appRole}"`);
      const failed = await http().get('/api/v1/organizations').ca(ca).set('authorization', `Bearer ${token}`);
      await owner.query(`GRANT SELECT ON platform_admin_tokens TO "${env.appRole}"`);
      Object.assign(responses, { 500: failed });
    } finally {
      await owner.end();
    }
    for (const [status, res] of Object.entries(responses)) {
      assert.equal(res.status, Number(status));
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) assert.equal(res.headers[name], value, `${name} on ${status}`);
      assert.match(res.headers['content-security-policy'], /default-src 'none'/);
    }
    assert.equal(responses[413].body.error.code, 'payload_too_large');
    assert.equal((responses as Record<number, request.Response>)[500].body.error.code, 'internal_error');
  });

  test('plain HTTP answers 308 to the same path on HTTPS, for any method, never to a foreign host', async () => {
    for (const method of ['GET', 'POST', 'DELETE']) {
      const res = await plainRequest(`${httpUrl}/api/v1/organizations?limit=5`, method);
      assert.equal(res.status, 308, method);
      assert.equal(res.headers.location, `${url}/api/v1/organizations?limit=5`);
      assert.equal(res.headers['strict-transport-security'], undefined, 'no HSTS over plain HTTP (RFC 6797 §8.1)');
    }
    const foreign = await plainRequest(`${httpUrl}/x`, 'GET', 'evil.example');
    assert.equal(foreign.headers.location, `https://localhost:${new URL(url).port}/x`);
    const unknownChallenge = await plainRequest(`${httpUrl}/.well-known/acme-challenge/no-such-token`, 'GET');
    assert.equal(unknownChallenge.status, 404);
  });
});

describe('TLS on the wire: the API process with customer certificate files (hot reload, redirects off)', () => {
  let env: TestEnv;
  let api: ChildProcess;
  let url: string;
  let httpUrl: string;
  let dir: string;
  let caRepo: InternalCaRepository;
  let ca: Buffer;
  const files = () => ({ certFile: join(dir, 'served', 'tls.crt'), keyFile: join(dir, 'served', 'tls.key') });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coffer-tls-files-'));
    caRepo = new InternalCaRepository(join(dir, 'customer-ca'));
    await caRepo.ensureCa('Customer test CA');
    mkdirSync(join(dir, 'served'));
    await caRepo.issueLeaf(['api.customer.example', '127.0.0.1'], files());
    ca = readFileSync(caRepo.ca.certFile);
    env = await createTestEnv({
      TLS_MODE: 'files',
      TLS_CERT_FILE: files().certFile,
      TLS_KEY_FILE: files().keyFile,
      TLS_RELOAD_INTERVAL_MS: '200',
      HTTP_REDIRECT_TO_HTTPS: 'false',
      TLS_DOMAINS: 'api.customer.example',
    });
    await migrateInstallation(env.config);
    ({ child: api, url, httpUrl } = await startApiProcess(env.config));
  });

  after(async () => {
    await stopProcess(api);
    await env?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('plain HTTP gets 403 https_required in the API error shape when redirects are off', async () => {
    const res = await plainRequest(`${httpUrl}/api/v1/organizations`, 'GET');
    assert.equal(res.status, 403);
    const body = JSON.parse(res.body);
    assert.equal(body.error.code, 'https_required');
    assert.equal(body.error.requestId, res.headers['x-request-id']);
    assert.equal(res.headers.location, undefined);
  });

  test('a replaced certificate is served to the next handshake without a restart; a broken pair is ignored', async () => {
    const first = await servedSerial(url, ca);
    const next = join(dir, 'next');
    mkdirSync(next);
    await caRepo.issueLeaf(['api.customer.example', '127.0.0.1'], { certFile: join(next, 'tls.crt'), keyFile: join(next, 'tls.key') });

    // The new certificate with the old key: not a pair, so the old certificate stays.
    writeFileSync(files().certFile, readFileSync(join(next, 'tls.crt')));
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(await servedSerial(url, ca), first, 'a mismatched pair must not be served');

    writeFileSync(files().keyFile, readFileSync(join(next, 'tls.key')));
    const expected = new X509Certificate(readFileSync(join(next, 'tls.crt'))).serialNumber;
    const deadline = Date.now() + 5000;
    let serial = first;
    while (serial === first && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      serial = await servedSerial(url, ca);
    }
    assert.equal(serial, expected);
    assert.notEqual(serial, first);
  });
});

describe('ACME HTTP-01 on the plain-HTTP port (API in process, Redis, real HTTP client)', () => {
  let env: TestEnv;
  let app: NestFastifyApplication;
  let httpUrl: string;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coffer-tls-acme-'));
    env = await createTestEnv({ TLS_MODE: 'internal-ca', TLS_DIR: join(dir, 'tls'), HTTP_REDIRECT_TO_HTTPS: 'false' });
    await migrateInstallation(env.config);
    app = await createApi(env.config);
    await app.listen({ host: '127.0.0.1', port: 0 });
    httpUrl = await app.get(PlainHttpListener).listen('127.0.0.1', 0);
  });

  after(async () => {
    await app?.close();
    await env?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('serves the key authorization of a challenge pending at any replica, and nothing once it is removed', async () => {
    // Another replica's store: its own Redis connection, the same installation (key prefix).
    const otherReplica = new JobsService(env.config);
    const store = new ChallengeStore(env.config, otherReplica);
    await store.set('tok-En_123', 'tok-En_123.thumbprint');
    const res = await plainRequest(`${httpUrl}/.well-known/acme-challenge/tok-En_123`, 'GET');
    assert.deepEqual([res.status, res.body, res.headers['content-type']], [200, 'tok-En_123.thumbprint', 'text/plain']);
    // Even with redirects off, the challenge path is the one thing plain HTTP answers.
    const other = await plainRequest(`${httpUrl}/.well-known/acme-challenge/tok-En_123/x`, 'GET');
    assert.equal(other.status, 403);
    await app.get(ChallengeStore).delete('tok-En_123');
    assert.equal((await plainRequest(`${httpUrl}/.well-known/acme-challenge/tok-En_123`, 'GET')).status, 404);
    await otherReplica.onApplicationShutdown();
  });
});
