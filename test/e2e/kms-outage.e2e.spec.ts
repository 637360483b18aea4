import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { withDatabase } from '@coffer/database';
import { KMS, KmsProvider, orgKeyName } from '@coffer/kms';
import { MetricsService } from '@coffer/metrics';
import { stopProcess } from '../support/api-process';
import type { OrgClient } from '../support/client';
import { connect, connectToOrgAsOwner } from '../support/test-env';
import { TestWorld } from '../support/world';

describe('writes through a KMS outage: queued with 202, flushed in order by the worker (API, worker on PostgreSQL and Redis; Vault transit double and a webhook receiver over HTTP)', () => {
  let world: TestWorld;
  let org: OrgClient;
  const cached: { name: string; version: number; body: Buffer }[] = [];

  before(async () => {
    world = await TestWorld.start({
      vault: true,
      webhook: true,
      config: {
        ALERT_CHECK_CRON: '* * * * * *',
        SPOOL_FLUSH_CRON: '* * * * * *',
        SPOOL_PENDING_WRITES_ALERT: '3',
        JOB_LOCK_MS: '2000',
        // Small segments and chunks: several objects per upload.
        PACKAGE_SEGMENT_BYTES: '1024',
        PACKAGE_CHUNK_BYTES: '4096',
      },
      orgs: ['acme'],
      users: { member: { org: 'acme', role: 'member' }, officer: { org: 'acme', role: 'security_officer' } },
    });
    org = world.org('acme');
    for (const [name, version] of [['handbook', 1], ['handbook', 2], ['policies', 1]] as const) {
      const body = randomBytes(5000);
      assert.equal((await upload(name, body)).status, 201);
      cached.push({ name, version, body });
      // Read once: the API now holds the version's data key in its cache.
      assert.deepEqual((await content(name, version)).body, body);
    }
    await world.startWorker();
  });

  after(() => world?.stop());

  const upload = (name: string, body: Buffer, token = org.adminToken) =>
    org.as(token).put(`packages/${name}`).set('content-type', 'application/octet-stream').send(body);
  const content = (name: string, version: number) =>
    org
      .get(`packages/${name}/versions/${version}/content`)
      .buffer(true)
      .parse((res, done) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => done(null, Buffer.concat(chunks)));
      });
  const pendingWrite = (id: string, token = world.user('member').token) => org.as(token).get(`pending-writes/${id}`);
  const entries = async (action: string) =>
    (await org.get(`audit-logs?action=${action}&limit=1000`)).body.entries as {
      outcome: string;
      actor: Record<string, string>;
      target: Record<string, unknown>;
      body: Record<string, unknown>;
    }[];
  const sent = (name: string) => world.webhook.received.filter((b) => b.commonLabels.alertname === name).map((b) => b.status);
  const until = async <T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const settled = (ids: string[]) =>
    until(`${ids.length} queued writes to be flushed`, async () => {
      const states = await Promise.all(ids.map(async (id) => (await pendingWrite(id)).body));
      return states.every((s) => s.status !== 'pending') ? states : undefined;
    });
  /** Uploads one after another (their order is the order they must flush in); every one must be 202. */
  const queueUploads = async (name: string, count: number) => {
    const queued: { id: string; body: Buffer }[] = [];
    for (let i = 0; i < count; i++) {
      const body = randomBytes(3000 + i * 100);
      const res = await upload(name, body, i % 2 ? world.user('member').token : org.adminToken);
      assert.equal(res.status, 202, JSON.stringify(res.body));
      assert.equal(res.body.status, 'pending');
      assert.equal(res.body.size, body.length);
      queued.push({ id: res.body.pendingWriteId, body });
    }
    return queued;
  };
  const asOwner = async <T>(fn: (owner: Awaited<ReturnType<typeof connectToOrgAsOwner>>) => Promise<T>): Promise<T> => {
    const owner = await connectToOrgAsOwner(world.env, org.id);
    try {
      return await fn(owner);
    } finally {
      await owner.end();
    }
  };
  /** Each queued write flushed once, in order, as versions 1..n of `name`, with the uploaded content. */
  const assertFlushedInOrder = async (name: string, queued: { id: string; body: Buffer }[]) => {
    const states = await settled(queued.map((q) => q.id));
    assert.deepEqual(
      states.map((s) => [s.status, s.package, s.version]),
      queued.map((_, i) => ['flushed', name, i + 1]),
    );
    const listed = await org.get(`packages/${name}`);
    assert.deepEqual(listed.body.versions.map((v: { version: number }) => v.version), queued.map((_, i) => i + 1));
    for (const [i, { body }] of queued.entries()) assert.deepEqual((await content(name, i + 1)).body, body, `version ${i + 1}`);
    const flushed = (await entries('package.version_flushed')).filter((e) => e.target.package === name);
    assert.deepEqual(
      flushed.map((e) => e.target.pendingWriteId).sort(),
      queued.map((q) => q.id).sort(),
      'each write audited once',
    );
    assert.ok(flushed.every((e) => e.actor.id === 'system:flush-spool' && e.outcome === 'success'));
    const rows = await asOwner((owner) =>
      owner.query(`SELECT count(*)::int AS n, count(DISTINCT version)::int AS versions FROM package_versions WHERE package_name = $1 AND state = 'committed'`, [name]),
    );
    assert.deepEqual(rows.rows[0], { n: queued.length, versions: queued.length }, 'no duplicate version');
  };

  test('stopping the Vault double: cached reads go on, every upload gets 202, KmsUnavailable fires; after restart each write is flushed in order, readable and audited, and the alert resolves', async () => {
    await world.vault.stop();
    let reads = 0;
    const reading = (async () => {
      for (let round = 0; round < 10; round++) {
        for (const { name, version, body } of cached) {
          const res = await content(name, version);
          assert.equal(res.status, 200, `read of ${name} v${version} during the outage`);
          assert.deepEqual(res.body, body);
          reads++;
        }
      }
    })();
    const [queued] = await Promise.all([queueUploads('doc', 6), reading]);
    assert.equal(reads, 30);

    const first = await pendingWrite(queued[0].id);
    assert.equal(first.status, 200);
    assert.deepEqual([first.body.status, first.body.package, first.body.version], ['pending', 'doc', null]);
    assert.equal((await pendingWrite(queued[0].id, world.user('officer').token)).status, 403, 'only roles that upload poll');
    assert.equal((await pendingWrite('nope')).body.error.code, 'pending_write_not_found');
    const hidden = await org.get('packages/doc');
    assert.equal(hidden.status, 404, 'a queued version is not listed');
    assert.equal((await content('doc', 1)).status, 404, 'nor downloadable');
    const queuedEntries = await entries('package.version_queued');
    assert.deepEqual(queuedEntries.map((e) => e.target.pendingWriteId).sort(), queued.map((q) => q.id).sort());
    const accepted = (await entries('package.version_created')).filter((e) => e.target.name === 'doc');
    assert.equal(accepted.length, 6, 'each 202 is audited by the interceptor');

    const newOrg = await world.api
      .post('organizations')
      .send({ slug: `no-kms-${randomBytes(3).toString('hex')}`, name: 'No KMS' });
    assert.equal(newOrg.status, 503, 'creating an org cannot queue');
    assert.equal(newOrg.body.error.code, 'kms_unavailable');
    assert.ok(newOrg.headers['retry-after']);

    await until('KmsUnavailable firing', () => sent('KmsUnavailable').includes('firing') || undefined);
    await until('SpoolGrowing firing', () => sent('SpoolGrowing').includes('firing') || undefined);
    const status = await org.as(world.user('officer')).get('encryption-status');
    assert.equal(status.body.details.pendingWrites.pending, 6);
    const metrics = await fetch(`http://127.0.0.1:${world.app.get(MetricsService).port}/metrics`).then((r) => r.text());
    assert.match(metrics, new RegExp(`^coffer_pending_writes\\{org="${org.slug}"\\} 6$`, 'm'));

    // Taken while the writes wait: their data keys exist only sealed to the spool key.
    const dump = spawnSync('pg_dump', ['--data-only', withDatabase(world.config.DATABASE_OWNER_URL, `${world.config.ORG_DATABASE_PREFIX}${org.id}`)], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    assert.equal(dump.status, 0, dump.stderr);
    const stored = readAll(world.config.STORAGE_DIR);

    await world.vault.start();
    await assertFlushedInOrder('doc', queued);
    await until('KmsUnavailable resolved', () => (sent('KmsUnavailable').at(-1) === 'resolved' ? true : undefined));
    await until('SpoolGrowing resolved', () => (sent('SpoolGrowing').at(-1) === 'resolved' ? true : undefined));
    assert.deepEqual(sent('KmsUnavailable'), ['firing', 'resolved']);

    // The plaintext keys, now that the KMS can unwrap them: none is in the dump or the storage.
    const kms = world.app.get<KmsProvider>(KMS);
    const wrapped = await asOwner(async (owner) => [
      ...(await owner.query(`SELECT wrapped_dek AS w FROM package_versions WHERE package_name = 'doc'`)).rows,
      ...(await owner.query(`SELECT wrapped_key AS w FROM spool_keys`)).rows,
    ]);
    assert.equal(wrapped.length, 7);
    for (const { w } of wrapped) {
      const key = await kms.unwrap(orgKeyName(org.id), w);
      for (const form of [key.toString('hex'), key.toString('base64'), key.toString('base64url')]) {
        assert.ok(!dump.stdout.includes(form), 'no plaintext data key in pg_dump');
      }
      assert.ok(stored.every((bytes) => bytes.indexOf(key) === -1), 'no plaintext data key in storage');
    }
    assert.match(dump.stdout, /spool:[0-9a-f]+:/, 'the dump holds the sealed form');
  });

  test('sealing the Vault double queues uploads too; a tampered spool entry fails closed while the others flush', async () => {
    world.vault.seal();
    const queued = await queueUploads('sealed-doc', 3);
    assert.deepEqual((await content('handbook', 2)).body, cached[1].body, 'a cached read works while sealed');
    const tampered = queued[1];
    await asOwner(async (owner) => {
      const { rows } = await owner.query(
        `SELECT v.id, v.wrapped_dek FROM package_versions v JOIN pending_writes w ON w.target = v.id WHERE w.id = $1`,
        [tampered.id],
      );
      const [, keyId, body] = rows[0].wrapped_dek.split(':');
      const bytes = Buffer.from(body, 'base64');
      bytes[bytes.length - 20] ^= 1;
      await owner.query(`UPDATE package_versions SET wrapped_dek = $2 WHERE id = $1`, [rows[0].id, `spool:${keyId}:${bytes.toString('base64')}`]);
    });
    await until('KmsUnavailable firing again', () => (sent('KmsUnavailable').length === 3 ? true : undefined));
    world.vault.unseal();
    const states = await settled(queued.map((q) => q.id));
    assert.deepEqual(
      states.map((s) => [s.status, s.version]),
      [['flushed', 1], ['failed', null], ['flushed', 2]],
    );
    assert.match(states[1].lastError, /does not authenticate/);
    assert.deepEqual((await content('sealed-doc', 1)).body, queued[0].body);
    assert.deepEqual((await content('sealed-doc', 2)).body, queued[2].body);
    assert.equal((await content('sealed-doc', 3)).status, 404);
    const failed = await entries('package.version_flush_failed');
    assert.deepEqual(failed.map((e) => [e.outcome, e.target.pendingWriteId]), [['failure', tampered.id]]);
    await until('KmsUnavailable resolved again', () => (sent('KmsUnavailable').length === 4 ? true : undefined));
    assert.deepEqual(sent('KmsUnavailable'), ['firing', 'resolved', 'firing', 'resolved']);
  });

  test('an upload, queued or not, holds no transaction open while its body streams', async () => {
    const idleInTransaction = async () => {
      const admin = await connect(world.env.adminUrl, 'postgres');
      try {
        const { rows } = await admin.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND state LIKE 'idle in transaction%'`,
          [`${world.config.ORG_DATABASE_PREFIX}${org.id}`],
        );
        return rows[0].n as number;
      } finally {
        await admin.end();
      }
    };
    const streamed = async (name: string) => {
      const url = new URL(org.url(`packages/${name}`));
      const body = randomBytes(4096);
      let answer!: (status: number) => void;
      const status = new Promise<number>((resolve) => (answer = resolve));
      const req = httpRequest(url, { method: 'PUT', headers: { ...org.headers(), 'content-type': 'application/octet-stream' } }, (res) => {
        res.resume();
        answer(res.statusCode!);
      });
      req.write(body.subarray(0, 2048));
      await new Promise((resolve) => setTimeout(resolve, 500));
      const open = await idleInTransaction();
      req.end(body.subarray(2048));
      return { open, status: await status };
    };
    assert.deepEqual(await streamed('streamed'), { open: 0, status: 201 });
    await world.vault.stop();
    try {
      assert.deepEqual(await streamed('streamed-queued'), { open: 0, status: 202 });
      assert.deepEqual(await streamed('streamed-queued'), { open: 0, status: 202 }, 'behind a queued one');
    } finally {
      await world.vault.start();
    }
  });

  test('killing the worker process in the middle of a flush loses and duplicates nothing (Vault transit double made slow)', async () => {
    await world.stopWorker();
    await world.vault.stop();
    const queued = await queueUploads('killed', 12);
    world.vault.latencyMs = 150;
    await world.vault.start();
    // The KMS is back but nothing has flushed yet: a new upload of the name queues behind the others.
    const behind = randomBytes(2000);
    const late = await upload('killed', behind);
    assert.equal(late.status, 202);
    queued.push({ id: late.body.pendingWriteId, body: behind });
    const flushedCount = () =>
      asOwner(async (owner) => (await owner.query(`SELECT count(*)::int AS n FROM pending_writes w JOIN package_versions v ON v.id = w.target WHERE v.package_name = 'killed' AND w.status = 'flushed'`)).rows[0].n as number);
    let child: ChildProcess | undefined = await world.startWorkerProcess();
    let second: ChildProcess | undefined;
    try {
      const before = await until('the flush to be under way', async () => {
        const n = await flushedCount();
        return n >= 3 ? n : undefined;
      });
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
      child = undefined;
      const atKill = await flushedCount();
      assert.ok(before <= atKill && atKill < queued.length, `killed mid-flush (${atKill} of ${queued.length} flushed)`);
      second = await world.startWorkerProcess();
      await assertFlushedInOrder('killed', queued);
    } finally {
      world.vault.latencyMs = 0;
      child?.kill('SIGKILL');
      await stopProcess(second);
    }
  });
});

function readAll(dir: string): Buffer[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? readAll(path) : [readFileSync(path)];
  });
}
