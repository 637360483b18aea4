import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { anchorKey, AuditDeliveryService, AuditService, checkpointKeyName } from '@coffer/audit';
import { OrgRef, OrgRegistry } from '@coffer/tenancy';
import { REPO_ROOT } from '../support/api-process';
import type { OrgClient } from '../support/client';
import { TestWorld } from '../support/world';

const CUSTOMER = 'customer-audit';
const STORAGE = 'coffer-storage';
const CLI_MAIN = join(REPO_ROOT, 'dist/apps/cli/src/main.js');

/**
 * `coffer audit:verify-offline`, the compiled CLI run with no configuration at all (no
 * DATABASE_URL, no KMS, no Redis in its environment), against what was delivered to the
 * customer's bucket.
 */
function verifyOffline(path: string, keysFile?: string) {
  const result = spawnSync(process.execPath, [CLI_MAIN, 'audit:verify-offline', path, ...(keysFile ? ['--keys', keysFile] : [])], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '' },
    encoding: 'utf8',
  });
  return { code: result.status, output: result.stdout ? JSON.parse(result.stdout) : undefined, err: result.stderr };
}

for (const kms of ['local', 'vault'] as const) {
  const servers = kms === 'vault' ? 'the OpenBao transit double' : 'the local KMS';
  describe(`public verification with ${servers}: keys route, anchors in s3rver, the delivered log verified offline (PostgreSQL, s3rver, ${servers})`, () => {
    let world: TestWorld;
    let org: OrgClient;
    let ref: OrgRef;
    let dir: string;

    before(async () => {
      world = await TestWorld.start({
        s3: [CUSTOMER, STORAGE],
        storageBucket: STORAGE,
        vault: kms === 'vault',
        config: { AUDIT_DELIVERY_BATCH_SIZE: '5' },
        orgs: ['acme'],
      });
      org = world.org('acme');
      ref = await world.app.get(OrgRegistry).resolve(org.slug);
      dir = mkdtempSync(join(tmpdir(), 'coffer-offline-'));
    });

    after(async () => {
      if (dir) rmSync(dir, { recursive: true, force: true });
      await world?.stop();
    });

    const audit = () => world.app.get(AuditService);
    const settle = () => new Promise((r) => setTimeout(r, 300));

    test('checkpoints are anchored in the storage bucket, and GET /api/v1/audit/keys publishes their public keys to anyone', async () => {
      assert.equal((await org.put('audit-logs/destination').send(world.s3.destination(CUSTOMER, 'coffer'))).status, 204);
      for (let i = 0; i < 4; i++) await Promise.all(Array.from({ length: 4 }, () => org.get('users')));
      await settle();
      const first = await audit().checkpoint(audit().chain(ref));
      assert.ok(first && first > 10, `signed ${first}`);
      for (let i = 0; i < 3; i++) await Promise.all(Array.from({ length: 4 }, () => org.get('users')));
      await settle();
      const second = await audit().checkpoint(audit().chain(ref));
      assert.ok(second && second > first);
      const anchors = world.s3.objects(STORAGE).map((o) => o.key).filter((k) => k.startsWith(`anchors/${org.id}/`));
      assert.deepEqual(anchors.sort(), [anchorKey(org.id, first), anchorKey(org.id, second)]);

      const keys = await world.http().get(`/api/v1/audit/keys?chain=${org.id}`);
      assert.equal(keys.status, 200, JSON.stringify(keys.body));
      assert.equal(keys.body.chain, org.id);
      assert.deepEqual(keys.body.keys.map((k: { keyName: string; version: number }) => [k.keyName, k.version]), [[checkpointKeyName(org.id), 1]]);
      assert.equal(Buffer.from(keys.body.keys[0].publicKey, 'base64').length, 32);
      writeFileSync(join(dir, 'keys.json'), JSON.stringify(keys.body));
      assert.equal((await world.http().get('/api/v1/audit/keys?chain=not-a-chain')).status, 400);
    });

    test('the delivered log (entries and digests from s3rver) verifies offline with the public keys alone, and not after one byte of one object changed', async () => {
      const delivered = await world.app.get(AuditDeliveryService).deliver(ref);
      assert.ok(delivered >= 4, `${delivered} batches`);
      const objects = world.s3.objects(CUSTOMER);
      const digests = objects.filter((o) => o.key.includes('/digests/'));
      const withCheckpoint = digests.map((o) => JSON.parse(o.body.toString('utf8'))).filter((d) => d.checkpoint);
      assert.ok(withCheckpoint.length >= 1, 'the digests carry the latest anchor');
      assert.equal(digests[0] && JSON.parse(digests[0].body.toString('utf8')).publicKeys[0].keyName, checkpointKeyName(org.id));

      const bucket = join(dir, 'bucket');
      for (const o of objects) {
        mkdirSync(dirname(join(bucket, o.key)), { recursive: true });
        writeFileSync(join(bucket, o.key), o.body);
      }
      const keysFile = join(dir, 'keys.json');
      const ok = verifyOffline(bucket, keysFile);
      assert.equal(ok.code, 0, `${ok.err} ${JSON.stringify(ok.output)}`);
      const progress = (await org.get('audit-logs/destination')).body;
      assert.deepEqual(
        { valid: ok.output.valid, chain: ok.output.chain, keysFrom: ok.output.keysFrom, signedThrough: ok.output.signedThrough, checkedThrough: ok.output.checkedThrough },
        { valid: true, chain: org.id, keysFrom: 'pinned', signedThrough: progress.deliveredThrough, checkedThrough: progress.deliveredThrough },
      );

      // One byte of one entries object.
      const entries = objects.find((o) => o.key.includes(`/entries/${'6'.padStart(20, '0')}-`))!;
      const path = join(bucket, entries.key);
      const original = readFileSync(path);
      const changed = Buffer.from(original);
      changed[Math.floor(changed.length / 2)] ^= 0x01;
      writeFileSync(path, changed);
      const bad = verifyOffline(bucket, keysFile);
      assert.equal(bad.code, 2, bad.err);
      assert.equal(bad.output.valid, false);
      assert.equal(bad.output.firstBadSequence, 6);
      assert.match(bad.output.anchor, /digests\/0+2\.json$/);
      writeFileSync(path, original);

      // One byte of one digest.
      const digest = digests[2];
      const digestPath = join(bucket, digest.key);
      const forged = Buffer.from(digest.body);
      forged[Math.floor(forged.length / 3)] ^= 0x01;
      writeFileSync(digestPath, forged);
      const badDigest = verifyOffline(bucket, keysFile);
      assert.equal(badDigest.code, 2, badDigest.err);
      assert.equal(badDigest.output.valid, false);
      writeFileSync(digestPath, digest.body);
      assert.equal(verifyOffline(bucket, keysFile).code, 0, 'restored, it verifies again');
    });

    test('an NDJSON export from the API, with the anchors from the storage bucket, verifies offline', async () => {
      const exported = await org.get('audit-logs?limit=1000').set('Accept', 'application/x-ndjson');
      assert.equal(exported.status, 200);
      const exportDir = join(dir, 'export');
      mkdirSync(exportDir, { recursive: true });
      writeFileSync(join(exportDir, 'log.ndjson'), exported.text);
      for (const o of world.s3.objects(STORAGE).filter((o) => o.key.startsWith(`anchors/${org.id}/`))) {
        writeFileSync(join(exportDir, o.key.split('/').pop()!), o.body);
      }
      const result = verifyOffline(exportDir, join(dir, 'keys.json'));
      assert.equal(result.code, 0, `${result.err} ${JSON.stringify(result.output)}`);
      assert.equal(result.output.valid, true);
      assert.ok(result.output.signedThrough > 10);
      assert.equal(verifyOffline(join(dir, 'nope')).code, 64, 'a path that is not there is a usage error');
    });
  });
}
