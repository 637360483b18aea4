import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { AuditDigest, canonicalJson, ChainedEntry, ChainVerifier } from '@coffer/audit';
import { KMS, KmsProvider } from '@coffer/kms';
import type { OrgClient } from '../support/client';
import { connectToOrgAsOwner } from '../support/test-env';
import { TestWorld } from '../support/world';

const BUCKET = 'customer-audit';
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('audit delivery to the customer bucket (s3rver over HTTP; worker as a real process, killed mid-delivery)', () => {
  let world: TestWorld;
  let org: OrgClient;

  before(async () => {
    world = await TestWorld.start({
      s3: [BUCKET],
      config: { AUDIT_DELIVERY_CRON: '* * * * * *', AUDIT_DELIVERY_BATCH_SIZE: '5', JOB_LOCK_MS: '2000' },
      orgs: ['acme'],
    });
    org = world.org('acme');
  });

  after(() => world?.stop());

  const shown = () => org.get('audit-logs/destination');
  const destination = (body: Record<string, unknown>) => org.put('audit-logs/destination').send(body);
  const good = () => world.s3.destination(BUCKET, 'coffer');

  test('a destination is checked before it is stored, and its credentials are stored sealed', async () => {
    assert.equal((await shown()).body.error.code, 'audit_destination_not_found');
    const invalid = await destination({ ...good(), endpoint: 'ftp://example.com', bucket: 'A' });
    assert.equal(invalid.status, 400);
    assert.equal(invalid.body.error.code, 'validation_failed');
    const missing = await destination({ ...good(), bucket: 'no-such-bucket' });
    assert.equal(missing.status, 422);
    assert.equal(missing.body.error.code, 'audit_destination_unreachable');
    // s3rver checks the access key id but not SigV4 signatures, so a wrong secret goes unnoticed here.
    const wrongKey = await destination({ ...good(), accessKeyId: 'NOT-A-KEY' });
    assert.equal(wrongKey.body.error.code, 'audit_destination_unreachable');

    assert.equal((await destination(good())).status, 204);
    const stored = await shown();
    assert.equal(stored.status, 200);
    assert.equal(stored.body.bucket, BUCKET);
    assert.equal(stored.body.prefix, 'coffer/');
    assert.ok(!JSON.stringify(stored.body).includes(world.s3.secretAccessKey), 'the credentials are never shown');

    const owner = await connectToOrgAsOwner(world.env, org.id);
    try {
      const { rows } = await owner.query('SELECT * FROM audit_destination');
      assert.equal(rows.length, 1);
      assert.ok(!rows[0].credentials.includes(Buffer.from(world.s3.secretAccessKey)), 'no credential in clear in PostgreSQL');
      const logs = await owner.query(`SELECT * FROM audit_log WHERE action LIKE 'audit_destination.%'`);
      assert.deepEqual(logs.rows.map((r) => r.outcome).sort(), ['failure', 'failure', 'failure', 'success']);
      assert.ok(!JSON.stringify(logs.rows).includes(world.s3.secretAccessKey), 'no credential in the audit log');
    } finally {
      await owner.end();
    }
  });

  test('after the worker is killed mid-delivery and restarted, every entry is in the bucket and the digests chain', async () => {
    // Enough entries for dozens of 5-entry batches.
    for (let i = 0; i < 30; i++) {
      await Promise.all(Array.from({ length: 8 }, () => org.get('users')));
    }
    const head = await headSeq();
    assert.ok(head >= 240, `head ${head}`);

    let worker = await world.startWorkerProcess();
    const digests = () => world.s3.objects(BUCKET).filter((o) => o.key.includes('/digests/')).length;
    const deadline = Date.now() + 60_000;
    while (digests() < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    worker.kill('SIGKILL');
    await new Promise((r) => worker.once('exit', r));
    const deliveredAtKill = digests();
    assert.ok(deliveredAtKill >= 3 && deliveredAtKill < head / 5, `killed after ${deliveredAtKill} of ${Math.ceil(head / 5)} batches`);

    worker = await world.startWorkerProcess();
    const finished = Date.now() + 120_000;
    let status = await shown();
    while (status.body.deliveredThrough < head && Date.now() < finished) {
      await new Promise((r) => setTimeout(r, 200));
      status = await shown();
    }
    assert.ok(status.body.deliveredThrough >= head, `delivered through ${status.body.deliveredThrough} of ${head}`);

    const objects = world.s3.objects(BUCKET);
    const prefix = `coffer/${org.id}/`;
    assert.ok(objects.every((o) => o.key.startsWith(prefix)), 'everything under the org prefix');

    // Every sequence number at least once, and the chain re-verifies from the bucket alone.
    const bySeq = new Map<number, ChainedEntry>();
    for (const o of objects.filter((o) => o.key.includes('/entries/'))) {
      for (const line of gunzipSync(o.body).toString('utf8').trim().split('\n')) {
        const e = JSON.parse(line);
        bySeq.set(e.seq, { ...e, occurredAt: new Date(e.occurredAt), prevHash: Buffer.from(e.prevHash, 'hex'), hash: Buffer.from(e.hash, 'hex') });
      }
    }
    const verifier = new ChainVerifier(org.id);
    for (let seq = 1; seq <= head; seq++) {
      assert.ok(bySeq.has(seq), `entry ${seq} is in the bucket`);
      assert.ok(verifier.next(bySeq.get(seq)!), `entry ${seq} verifies: ${JSON.stringify(verifier.result())}`);
    }

    // The digests: consecutive, each naming the previous one's hash, its object's hash, the
    // chain's hash at its last entry, and signed by the org's audit key.
    const kms = world.app.get<KmsProvider>(KMS);
    const digestObjects = objects.filter((o) => o.key.includes('/digests/'));
    let previous = null as { sha: string; lastSeq: number } | null;
    for (const [i, o] of digestObjects.entries()) {
      const digest = JSON.parse(o.body.toString('utf8')) as AuditDigest;
      assert.equal(digest.batch, i + 1);
      assert.equal(digest.previousDigestSha256, previous?.sha ?? null, `digest ${digest.batch} links to ${previous?.sha}`);
      assert.equal(digest.firstSeq, (previous?.lastSeq ?? 0) + 1);
      assert.equal(digest.chain, org.id);
      const object = objects.find((x) => x.key === digest.object);
      assert.ok(object, `digest ${digest.batch} names an object that is there`);
      assert.equal(sha256(object.body), digest.objectSha256);
      assert.equal(digest.lastEntryHash, bySeq.get(digest.lastSeq)!.hash.toString('hex'));
      const { signature, ...unsigned } = digest;
      assert.ok(await kms.verify(digest.keyName, Buffer.from(canonicalJson(unsigned)), signature), `digest ${digest.batch} signature`);
      previous = { sha: sha256(o.body), lastSeq: digest.lastSeq };
    }
    assert.equal(previous?.lastSeq, status.body.deliveredThrough);
  });

  async function headSeq(): Promise<number> {
    const owner = await connectToOrgAsOwner(world.env, org.id);
    try {
      return Number((await owner.query('SELECT max(seq) AS seq FROM audit_log')).rows[0].seq);
    } finally {
      await owner.end();
    }
  }

});
