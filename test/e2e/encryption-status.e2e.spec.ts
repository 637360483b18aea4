import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { bearer, type OrgClient } from '../support/client';
import { connectToOrgAsOwner } from '../support/test-env';
import { TestWorld } from '../support/world';

describe('encryption status, measured from live state (API process over HTTPS, PostgreSQL, Redis, local KMS)', () => {
  let world: TestWorld;
  let org: OrgClient;

  /** A JSON request to the org's routes over HTTPS, verified against the installation's CA, at most `maxVersion`. */
  const call = (method: string, rest: string, token: string, body?: unknown, maxVersion: 'TLSv1.2' | 'TLSv1.3' = 'TLSv1.3') =>
    new Promise<{ status: number; body: any }>((resolve, reject) => {
      const headers = { ...bearer(token), ...(body ? { 'content-type': Buffer.isBuffer(body) ? 'application/octet-stream' : 'application/json' } : {}) };
      const req = httpsRequest(org.url(rest), { method, ca: world.caCert, maxVersion, headers }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c)).on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : undefined }));
      });
      req.once('error', reject);
      if (Buffer.isBuffer(body)) req.write(body);
      else if (body) req.write(JSON.stringify(body));
      req.end();
    });
  const status = (maxVersion?: 'TLSv1.2' | 'TLSv1.3') => call('GET', 'encryption-status', org.adminToken, undefined, maxVersion);
  /** Reads the status until it shows `done` (measurements are refreshed every 2 s, in the background). */
  const statusUntil = async (done: (body: any) => boolean) => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const res = await status();
      if (done(res.body) || Date.now() > deadline) return res;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };

  before(async () => {
    world = await TestWorld.start({ process: true, tls: true, orgs: ['status'] });
    org = world.org('status');
  });

  after(() => world?.stop());

  test("answers the four keys the encryption requirement fixes: storage, the request's own TLS version, key rotation, database", async () => {
    const uploaded = await call('PUT', 'packages/handbook', org.adminToken, Buffer.from('knowledge'));
    assert.equal(uploaded.status, 201);
    const res = await status();
    assert.equal(res.status, 200);
    assert.equal(res.body.storage_encryption, 'AES-256-KMS');
    assert.equal(res.body.transit_encryption, 'TLS-1.3');
    assert.equal(res.body.db_encryption, 'active');
    assert.equal(res.body.key_rotation.last_rotated, null);
    const days = (Date.parse(res.body.key_rotation.next_rotation) - Date.now()) / 86_400_000;
    assert.ok(days > 89.9 && days <= 90);
    assert.deepEqual(res.body.details.kms, { provider: 'local', reachable: true, sealed: false });
    const storage = res.body.details.storage;
    assert.deepEqual([storage.driver, storage.versions, storage.kmsWrapped, storage.serverSideEncryption], ['filesystem', 1, 1, null]);
    assert.ok(res.body.details.database.columns.every((c: { plaintext: number }) => c.plaintext === 0));
    const served = new X509Certificate(readFileSync(join(world.config.TLS_DIR, 'server.crt')));
    assert.equal(Date.parse(res.body.details.certificate.notAfter), Date.parse(served.validTo));
    assert.equal((await status('TLSv1.2')).body.transit_encryption, 'TLS-1.2', 'the protocol of this very request');
  });

  test('last_rotated moves after a rotation', async () => {
    const rotated = await call('POST', 'keys/rotate', org.adminToken);
    assert.equal(rotated.status, 200);
    const res = await statusUntil((b) => b.key_rotation.last_rotated !== null);
    assert.equal(Date.parse(res.body.key_rotation.last_rotated), Date.parse(rotated.body.rotatedAt));
    assert.equal(res.body.details.key.latestVersion, 2);
  });

  test('db_encryption reads partial, with counts, when the owner plants a plaintext row', async () => {
    const owner = await connectToOrgAsOwner(world.env, org.id);
    try {
      await owner.query(`INSERT INTO org_settings (key, value) VALUES ('planted', '\\x00'::bytea || convert_to('in clear', 'UTF8'))`);
    } finally {
      await owner.end();
    }
    const res = await statusUntil((b) => b.db_encryption !== 'active');
    assert.equal(res.body.db_encryption, 'partial');
    const settings = res.body.details.database.columns.find((c: { table: string }) => c.table === 'org_settings');
    assert.deepEqual([settings.plaintext, settings.encrypted], [1, 0]);
  });

  test('only admins and security officers may read it, and every read is audited', async () => {
    const logs = await call('GET', 'audit-logs?action=encryption_status.read', org.adminToken);
    assert.ok(logs.body.entries.length >= 4);
    const user = await call('POST', 'users', org.adminToken, { email: 'm@status.example', displayName: 'M', role: 'member' });
    const key = await call('POST', `users/${user.body.user.id}/api-keys`, org.adminToken, { name: 'm' });
    const denied = await call('GET', 'encryption-status', key.body.apiKey.secret);
    assert.equal(denied.status, 403);
  });
});
