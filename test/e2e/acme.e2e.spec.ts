import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect, PeerCertificate } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { DatabaseService } from '@coffer/database';
import { createKmsProvider } from '@coffer/kms';
import { CertificatesRepository, certificateId, renewalAlert } from '@coffer/tls';
import { freePort, REPO_ROOT, startApiProcess, startWorkerProcess, stopProcess } from '../support/api-process';
import { installCoffer } from '../support/installation';
import { Pebble, startPebble } from '../support/pebble';
import { createTestEnv, REDIS_URL, TestEnv } from '../support/test-env';
import { startWebhookReceiver, WebhookReceiver } from '../support/webhook';

const DOMAIN = 'vault.coffer.test';

/** The certificate served for DOMAIN, and whether its chain verifies against `ca`. */
function handshake(url: string, ca?: string): Promise<{ cert: PeerCertificate; authorized: boolean; error?: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: hostname, port: Number(port), servername: DOMAIN, ca, rejectUnauthorized: false }, () => {
      resolve({ cert: socket.getPeerCertificate(), authorized: socket.authorized, error: socket.authorizationError?.toString() });
      socket.end();
    });
    socket.once('error', reject);
  });
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface ListedCertificate {
  id: string;
  domains: string[];
  source: string;
  issuer: string | null;
  serial: string | null;
  notBefore: string | null;
  notAfter: string | null;
  nextRenewalAt: string;
  lastAttemptAt: string | null;
  lastError: string | null;
  failures: number;
}

describe('ACME on the wire: the worker orders and renews from pebble over real HTTP-01, the API process serves each new certificate without a restart', () => {
  let dir: string;
  let pebble: Pebble;
  let env: TestEnv;
  let installation: Awaited<ReturnType<typeof installCoffer>> | undefined;
  let api: ChildProcess;
  /** A second API replica: it never orders, and serves whatever the database holds. */
  let replica: ChildProcess;
  let replicaUrl: string;
  let worker: ChildProcess;
  let webhook: WebhookReceiver;
  let url: string;
  let adminToken: string;
  let output = '';
  const id = certificateId('acme', [DOMAIN]);

  /** A JSON request to the API over HTTPS (pebble's chain is not what this checks). */
  const call = (method: string, path: string, token = adminToken) =>
    new Promise<{ status: number; body: any }>((resolve, reject) => {
      const req = httpsRequest(`${url}${path}`, { method, rejectUnauthorized: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: body ? JSON.parse(body) : undefined }));
      });
      req.once('error', reject).end();
    });
  const listed = async (): Promise<ListedCertificate> => {
    const res = await call('GET', '/api/v1/admin/certificates');
    assert.equal(res.status, 200);
    return (res.body.certificates as ListedCertificate[]).find((c) => c.id === id)!;
  };
  const controlLog = async (action: string) =>
    (await call('GET', `/api/v1/admin/audit-logs?action=${action}&limit=100`)).body.entries as {
      action: string; outcome: string; occurredAt: string; actor: Record<string, string>; target: Record<string, string>; body: Record<string, unknown>;
    }[];
  /** The next certificate served, verified against pebble's (current) root, other than `serial`. */
  const nextServed = (serial: string | undefined, what: string, timeoutMs = 60_000) =>
    waitFor(what, async () => {
      const result = await handshake(url, await pebble.root());
      return result.authorized && result.cert.serialNumber !== serial ? result.cert : undefined;
    }, timeoutMs);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coffer-acme-'));
    const httpPort = await freePort();
    webhook = await startWebhookReceiver();
    // 120-second certificates: renewal falls due after 60 s, the alert time is 28 s before expiry.
    pebble = await startPebble(join(dir, 'pebble'), { httpPort, validitySeconds: 120 });
    env = await createTestEnv({
      TLS_MODE: 'acme',
      TLS_DOMAINS: DOMAIN,
      TLS_DIR: join(dir, 'tls'),
      TLS_RELOAD_INTERVAL_MS: '1000',
      TLS_RENEWAL_CRON: '* * * * * *',
      TLS_RENEWAL_RETRY_MS: '1000',
      ACME_HTTP_RETRIES: '0',
      ACME_DIRECTORY_URL: pebble.directoryUrl,
      ACME_EMAIL: 'ops@coffer.test',
      ACME_SELF_CHECK: 'false',
      ALERT_WEBHOOK_URLS: webhook.url,
    });
    installation = await installCoffer(env.config);
    const trustPebble = { NODE_EXTRA_CA_CERTS: pebble.listenerCaFile };
    ({ child: api, url } = await startApiProcess(env.config, (chunk) => (output += chunk), { ...trustPebble, HTTP_PORT: String(httpPort), LOG_LEVEL: 'info' }));
    adminToken = env.takeBootstrapToken();
    ({ child: replica, url: replicaUrl } = await startApiProcess(
      { ...env.config, TLS_DIR: join(dir, 'tls-replica') },
      (chunk) => (output += chunk),
      { ...trustPebble, LOG_LEVEL: 'info' },
    ));
    worker = await startWorkerProcess(env.config, trustPebble, (chunk) => (output += chunk));
  });

  after(async () => {
    await stopProcess(worker);
    await stopProcess(api);
    await stopProcess(replica);
    await installation?.close();
    await pebble?.stop();
    await webhook?.close();
    await env?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('serves the certificate the worker ordered (HTTP-01 answered by the API), without a restart; openssl verifies it against pebble\'s root', async () => {
    const served = await nextServed(undefined, 'the ACME certificate');
    assert.match(served.subjectaltname ?? '', /DNS:vault\.coffer\.test/);
    const rootFile = join(dir, 'pebble-root.pem');
    writeFileSync(rootFile, await pebble.root());
    const { port } = new URL(url);
    const openssl = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', DOMAIN, '-CAfile', rootFile, '-verify_return_error'], {
      input: '', encoding: 'utf8', timeout: 15_000,
    });
    assert.equal(openssl.status, 0, openssl.stderr);
    assert.match(openssl.stdout, /Verify return code: 0 \(ok\)/);
    const [issued] = await controlLog('certificate.issued');
    assert.equal(issued.actor.id, 'system:renew-certificate');
    assert.deepEqual(issued.target, { id });
  });

  test('renews the 120-second certificate before it expires and every API replica serves the new serial to the next handshake', async () => {
    const first = (await handshake(url, await pebble.root())).cert;
    const renewed = await nextServed(first.serialNumber, 'a renewed certificate', 90_000);
    const onReplica = await waitFor('the renewed certificate on the replica', async () => {
      const result = await handshake(replicaUrl, await pebble.root());
      return result.authorized && result.cert.serialNumber === renewed.serialNumber ? result : undefined;
    }, 10_000);
    assert.equal(onReplica.cert.serialNumber, renewed.serialNumber);
    assert.ok(Date.now() < new Date(first.valid_to).getTime(), 'renewed before the first one expired');
    assert.ok(new Date(renewed.valid_to).getTime() > Date.now());
    const [entry] = await controlLog('certificate.renewed');
    assert.equal(entry.actor.id, 'system:renew-certificate');
  });

  test('GET /admin/certificates lists the certificate for the platform admin only; POST .../renew (202) and certs:renew force renewals, audited alike', async () => {
    const listing = await listed();
    const served = (await handshake(url)).cert;
    assert.deepEqual(listing.domains, [DOMAIN]);
    assert.equal(listing.source, 'acme');
    assert.equal(listing.serial?.toUpperCase(), served.serialNumber.toUpperCase());
    assert.match(listing.issuer ?? '', /Pebble/);
    assert.equal(new Date(listing.notAfter!).getTime(), new Date(served.valid_to).getTime());
    const [notBefore, notAfter] = [new Date(listing.notBefore!).getTime(), new Date(listing.notAfter!).getTime()];
    assert.equal(new Date(listing.nextRenewalAt).getTime(), notAfter - (notAfter - notBefore) / 2, 'half-way for a 120 s certificate');
    assert.equal(listing.failures, 0);
    assert.equal(listing.lastError, null);
    assert.ok(listing.lastAttemptAt);
    assert.equal((await call('GET', '/api/v1/admin/certificates', 'coffer_pat.not-a-token')).status, 401);

    const unknown = await call('POST', '/api/v1/admin/certificates/acme-0000000000000000/renew');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'certificate_not_found');

    const forced = await call('POST', `/api/v1/admin/certificates/${id}/renew`);
    assert.equal(forced.status, 202);
    assert.equal(forced.body.jobId, `renew-certificate/${id}`);
    const afterRest = await nextServed(served.serialNumber, 'the certificate renewed on request', 30_000);

    const runCli = (...args: string[]) =>
      spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/cli.mjs'), ...args], {
        cwd: REPO_ROOT,
        env: { ...process.env, ...Object.fromEntries(Object.entries(env.config).map(([k, v]) => [k, String(v)])), COFFER_HOME: join(dir, 'no-local-start') },
        encoding: 'utf8',
      });
    const list = runCli('certs:list');
    assert.equal(list.status, 0, list.stderr);
    assert.deepEqual(JSON.parse(list.stdout).certificates.map((c: ListedCertificate) => [c.id, c.serial]), [[id, (await listed()).serial]]);
    const cli = runCli('certs:renew', id);
    assert.equal(cli.status, 0, cli.stderr);
    assert.deepEqual(JSON.parse(cli.stdout), { jobId: `renew-certificate/${id}` });
    await nextServed(afterRest.serialNumber, 'the certificate renewed from the CLI', 30_000);

    const [fromCli, fromRest] = await controlLog('certificate.renewal_requested');
    assert.deepEqual([fromRest.target, fromCli.target], [{ id }, { id }]);
    assert.equal(fromRest.actor.kind, 'platform_admin');
    assert.match(fromCli.actor.id, /^cli:/);
    const [notFound] = (await controlLog('certificate.renewal_requested')).filter((e) => e.outcome === 'failure');
    assert.deepEqual(notFound.body.error, { code: 'certificate_not_found', status: 404 });
  });

  test('with pebble stopped, renewal retries with backoff and the alert webhook fires once at the alert time; with pebble back, it resolves and a new certificate is served', async () => {
    await pebble.stop();
    const current = (await handshake(url)).cert;
    const alertAt = renewalAlert({ notBefore: new Date(current.valid_from), notAfter: new Date(current.valid_to) });
    const firing = await waitFor('the alert', async () => webhook.received.find((b) => b.status === 'firing'), 120_000);
    assert.ok(firing.receivedAt.getTime() >= alertAt.getTime(), `not before the alert time ${alertAt.toISOString()}`);
    assert.equal(firing.alerts[0].labels.alertname, 'CertificateRenewalFailing');
    assert.equal(firing.alerts[0].labels.certificate, id);
    assert.ok(new Date(firing.alerts[0].startsAt).getTime() >= alertAt.getTime());

    const failing = await listed();
    assert.ok(failing.failures >= 2, `failures recorded (${failing.failures})`);
    assert.match(failing.lastError ?? '', /the ACME server did not answer/);
    assert.ok(new Date(failing.nextRenewalAt) > new Date(failing.lastAttemptAt!), 'the next attempt waits');
    const failures = (await controlLog('certificate.renewal_failed')).reverse();
    assert.equal(failures[0].actor.id, 'system:renew-certificate');
    const waits = failures.slice(0, 3).map((e) => new Date(e.body.nextAttemptAt as string).getTime() - new Date(e.occurredAt).getTime());
    assert.ok(waits[0] < waits[1] && waits[1] < waits[2], `the backoff grows: ${waits.join(', ')} ms`);

    await new Promise((r) => setTimeout(r, 5000));
    assert.equal(webhook.received.filter((b) => b.status === 'firing').length, 1, 'still failing, not repeated');
    assert.equal((await controlLog('certificate.alert_raised')).length, 1);

    await pebble.restart();
    const resolved = await waitFor('the resolution', async () => webhook.received.find((b) => b.status === 'resolved'), 60_000);
    assert.equal(resolved.alerts[0].fingerprint, firing.alerts[0].fingerprint);
    await nextServed(current.serialNumber, 'a certificate from the restarted CA', 30_000);
    assert.equal((await listed()).failures, 0);
    assert.equal(webhook.received.length, 2);
  });

  test('private keys are never in clear in pg_dump, Redis or the logs', async () => {
    const db = new DatabaseService(env.config);
    const certificates = new CertificatesRepository(db, createKmsProvider(env.config, db.control));
    const pair = (await certificates.pair(id))!;
    const account = (await certificates.accountKey(pebble.directoryUrl))!.toString();
    await db.onApplicationShutdown();
    const secrets = [pair.key, account].map((pem) => pem.split('\n').filter((l) => l && !l.startsWith('-----')).join(''));
    assert.ok(secrets.every((s) => s.length > 40));

    const dump = spawnSync('pg_dump', ['--data-only', env.config.DATABASE_OWNER_URL], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    assert.equal(dump.status, 0, dump.stderr);
    assert.match(dump.stdout, /tls_certificates/);
    const redis = new Redis(REDIS_URL);
    let redisText = '';
    try {
      for (const key of await redis.keys(`${env.config.REDIS_KEY_PREFIX}*`)) {
        const type = await redis.type(key);
        const value =
          type === 'string' ? await redis.get(key)
          : type === 'hash' ? await redis.hgetall(key)
          : type === 'list' ? await redis.lrange(key, 0, -1)
          : type === 'set' ? await redis.smembers(key)
          : type === 'zset' ? await redis.zrange(key, '0', '-1')
          : type === 'stream' ? await redis.xrange(key, '-', '+')
          : null;
        redisText += `${key} ${JSON.stringify(value)}\n`;
      }
    } finally {
      redis.disconnect();
    }
    assert.match(redisText, /renew-certificate/, 'the job queue was read');
    for (const [where, text] of [['pg_dump', dump.stdout], ['Redis', redisText], ['logs', output]] as const) {
      assert.ok(!/PRIVATE KEY/.test(text), `no PEM private key in ${where}`);
      for (const secret of secrets) {
        for (const line of secret.match(/.{1,40}/g)!) assert.ok(!text.includes(line), `no part of a private key in ${where}`);
      }
    }
  });
});
