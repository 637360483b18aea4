import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as tlsConnect, PeerCertificate } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startApiProcess, stopProcess } from '../support/api-process';
import { Pebble, startPebble } from '../support/pebble';
import { createTestEnv, TestEnv } from '../support/test-env';

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

describe('ACME on the wire: the API process orders and renews its certificate from pebble over real HTTP-01', () => {
  let dir: string;
  let pebble: Pebble;
  let env: TestEnv;
  let api: ChildProcess;
  let url: string;
  let output = '';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coffer-acme-'));
    const httpPort = await freePort();
    // 40-second certificates: renewal falls due after 20 s, so the test sees a real one.
    pebble = await startPebble(join(dir, 'pebble'), { httpPort, validitySeconds: 40 });
    env = await createTestEnv({
      TLS_MODE: 'acme',
      TLS_DOMAINS: DOMAIN,
      TLS_DIR: join(dir, 'tls'),
      TLS_RELOAD_INTERVAL_MS: '1000',
      ACME_DIRECTORY_URL: pebble.directoryUrl,
      ACME_EMAIL: 'ops@coffer.test',
      ACME_SELF_CHECK: 'false',
    });
    ({ child: api, url } = await startApiProcess(env.config, (chunk) => (output += chunk), {
      HTTP_PORT: String(httpPort),
      NODE_EXTRA_CA_CERTS: pebble.listenerCaFile,
      LOG_LEVEL: 'info',
    }));
  });

  after(async () => {
    await stopProcess(api);
    await pebble?.stop();
    await env?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('serves a certificate issued by the ACME CA, without a restart, that verifies against its root', async () => {
    const root = await pebble.root();
    const served = await waitFor('the ACME certificate', async () => {
      const result = await handshake(url, root);
      return result.authorized ? result : undefined;
    }, 60_000);
    assert.match(served.cert.subjectaltname ?? '', new RegExp(`DNS:${DOMAIN.replace(/\./g, '\\.')}`));
    assert.match(output, /certificate issued by ACME/);
  });

  test('renews the certificate before it expires and serves the new one', async () => {
    const root = await pebble.root();
    const first = (await handshake(url, root)).cert.serialNumber;
    const renewed = await waitFor('a renewed certificate', async () => {
      const result = await handshake(url, root);
      return result.authorized && result.cert.serialNumber !== first ? result : undefined;
    }, 60_000);
    assert.notEqual(renewed.cert.serialNumber, first);
    assert.ok(new Date(renewed.cert.valid_to).getTime() > Date.now(), 'the new certificate is current');
  });
});
