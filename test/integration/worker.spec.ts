import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { SchedulerRegistry } from '@nestjs/schedule';
import { AuditScope, runInAuditScope } from '@coffer/audit';
import { JobScheduler, JobsService, scheduledJobs } from '@coffer/jobs';
import { createWorker } from '../../apps/worker/src/bootstrap';
import type { OrgClient } from '../support/client';
import { awaitJobs, tickAndAwait } from '../support/jobs';
import { connect } from '../support/test-env';
import { TestWorld } from '../support/world';

describe('worker: the expire-api-keys sweep runs end to end (BullMQ on Redis, PostgreSQL)', () => {
  let world: TestWorld;
  let org: OrgClient;

  before(async () => {
    // A cron that fires every second, so the real schedule drives the test.
    world = await TestWorld.start({ config: { EXPIRE_API_KEYS_CRON: '* * * * * *' }, orgs: ['acme'] });
    org = world.org('acme');
  });

  after(() => world?.stop());

  test("a key past its expiry is marked expired by the job, audited with the enqueuing request's id, address and agent", async () => {
    const member = await world.addUser(org, 'member');
    const expiresAt = new Date(Date.now() + 1000);
    const key = await org
      .post(`users/${member.userId}/api-keys`)
      .send({ name: 'soon', expiresAt: expiresAt.toISOString() });
    assert.equal(key.status, 201);

    // Enqueued from a request (before the worker's own sweep can): its entries name that request.
    await new Promise((resolve) => setTimeout(resolve, expiresAt.getTime() - Date.now() + 50));
    const source = { requestId: 'req-from-api', clientIp: '192.0.2.44', userAgent: 'worker-spec' };
    await runInAuditScope(new AuditScope({ id: 'user:test', kind: 'user' }, source), () =>
      world.app.get(JobsService).enqueue('expire-api-keys', { orgId: org.id }),
    );

    await world.startWorker();
    const orgDb = await connect(world.config.DATABASE_APP_URL, `${world.config.ORG_DATABASE_PREFIX}${org.id}`);
    try {
      const deadline = Date.now() + 15_000;
      let row: { expired_at: Date | null } | undefined;
      do {
        await new Promise((resolve) => setTimeout(resolve, 250));
        row = (await orgDb.query('SELECT expired_at FROM api_keys WHERE id = $1', [key.body.apiKey.id])).rows[0];
      } while (!row?.expired_at && Date.now() < deadline);
      assert.ok(row?.expired_at, 'the sweep marked the key expired');
      assert.ok(row.expired_at.getTime() >= expiresAt.getTime());
      const others = await orgDb.query('SELECT count(*)::int AS n FROM api_keys WHERE expired_at IS NOT NULL');
      assert.equal(others.rows[0].n, 1, 'keys without expiry are untouched');
    } finally {
      await orgDb.end();
    }
    const listed = await org.get('api-keys');
    assert.equal(listed.body.apiKeys.find((k: { id: string }) => k.id === key.body.apiKey.id).status, 'expired');

    const logs = await org.get('audit-logs?action=api_key.expired');
    assert.deepEqual(
      logs.body.entries.map((e: Record<string, unknown>) => [e.actor, e.target, e.requestId, e.clientIp, e.userAgent]),
      [[{ id: 'system:expire-api-keys', kind: 'system' }, { id: key.body.apiKey.id }, ...Object.values(source)]],
    );
  });

  test('a tick with nothing due enqueues nothing; the same work enqueued twice is one job', async () => {
    assert.deepEqual(await tickAndAwait(world.worker, 'find-expired-api-keys'), [{ enqueued: 0 }]);
    const jobs = world.worker.get(JobsService);
    const queue = jobs.queue('maintenance');
    await queue.pause();
    try {
      const first = await jobs.enqueue('expire-api-keys', { orgId: org.id });
      const second = await jobs.enqueue('expire-api-keys', { orgId: org.id });
      assert.equal(first, `expire-api-keys/${org.id}`);
      assert.equal(second, first);
      assert.equal(await queue.getWaitingCount(), 1);
    } finally {
      await queue.obliterate({ force: true });
      await queue.resume();
    }
  });

  test("the checkpoint sweep signs each chain's head, and verify checks the signatures", async () => {
    assert.equal((await world.worker.get(JobScheduler).tick('audit-checkpoint')).length, 2, 'the control plane and one org');
    const verify = () => org.get('audit-logs/verify');
    const orgDb = await connect(world.config.DATABASE_APP_URL, `${world.config.ORG_DATABASE_PREFIX}${org.id}`);
    try {
      const deadline = Date.now() + 15_000;
      let signed: { seq: string; key_name: string }[] = [];
      while (!signed.length && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        signed = (await orgDb.query('SELECT seq, key_name FROM audit_checkpoints')).rows;
      }
      assert.equal(signed.length, 1);
      assert.equal(signed[0].key_name, `coffer-audit-${org.id}`);
      const head = (await orgDb.query('SELECT max(seq) AS seq FROM audit_log')).rows[0].seq;
      assert.equal(signed[0].seq, head);
    } finally {
      await orgDb.end();
    }
    const result = await verify();
    assert.equal(result.body.valid, true);
  });

  test('every scheduled job has its cron; a tick enqueues with the fixed job ids, per org or once', async () => {
    const crons = world.worker.get(SchedulerRegistry).getCronJobs();
    assert.deepEqual([...crons.keys()].sort(), scheduledJobs().map(([name]) => name).sort());
    const scheduler = world.worker.get(JobScheduler);
    const queue = world.worker.get(JobsService).queue('maintenance');
    await queue.pause();
    try {
      assert.deepEqual(await scheduler.tick('sweep-packages'), [`sweep-packages/${org.id}`]);
      assert.deepEqual(await scheduler.tick('sweep-packages'), [`sweep-packages/${org.id}`]);
      assert.deepEqual(await scheduler.tick('audit-checkpoint'), ['audit-checkpoint/control', `audit-checkpoint/${org.id}`]);
      assert.deepEqual(await scheduler.tick('find-key-rotations'), ['find-key-rotations']);
      // Only the jobs ticked here: the worker's own crons (several fire at second 0) may add others.
      const ticked = new Set(['audit-checkpoint', 'find-key-rotations', 'sweep-packages']);
      assert.deepEqual(
        (await queue.getJobs(['waiting'])).filter((j) => ticked.has(j.name)).map((j) => [j.name, j.id, j.data]).sort(),
        [
          ['audit-checkpoint', 'audit-checkpoint/control', {}],
          ['audit-checkpoint', `audit-checkpoint/${org.id}`, { orgId: org.id }],
          ['find-key-rotations', 'find-key-rotations', {}],
          ['sweep-packages', `sweep-packages/${org.id}`, { orgId: org.id }],
        ].sort(),
      );
      await assert.rejects(scheduler.tick('rotate-key'), /has no schedule/);
    } finally {
      await queue.obliterate({ force: true });
      await queue.resume();
    }
  });

  test('a job whose org is gone is skipped; one whose org is active gets it', async () => {
    const jobs = world.worker.get(JobsService);
    const gone = randomUUID();
    assert.deepEqual(
      await awaitJobs(world.worker, async () => [await jobs.enqueue('sweep-packages', { orgId: gone }), await jobs.enqueue('sweep-packages', { orgId: org.id })]),
      [{ skipped: 'org_not_active' }, { purged: 0 }],
    );
  });

  test('the worker refuses to start against a database newer than its code', async () => {
    const owner = await connect(world.config.DATABASE_OWNER_URL);
    try {
      await owner.query(`INSERT INTO coffer_migrations (version, name) VALUES (999, 'from the future')`);
      await assert.rejects(createWorker(world.config, 2_000), /schema version 999/);
    } finally {
      await owner.query('DELETE FROM coffer_migrations WHERE version = 999');
      await owner.end();
    }
  });
});
