import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { OrgClient } from '../support/client';
import { connectToOrgAsOwner } from '../support/test-env';
import { TestWorld } from '../support/world';

type Entry = {
  seq: number;
  action: string;
  outcome: string;
  actor: Record<string, string>;
  target: Record<string, string> | null;
  requestId: string | null;
  clientIp: string | null;
  userAgent: string | null;
  body: Record<string, unknown>;
};

describe('audit trail over HTTP: automatic entries, query, export and verify (Fastify, PostgreSQL, Redis)', () => {
  let world: TestWorld;
  let org: OrgClient;
  let officer: { userId: string; token: string };
  let member: { userId: string; token: string };

  before(async () => {
    world = await TestWorld.start({
      orgs: ['acme'],
      users: { officer: { org: 'acme', role: 'security_officer' }, member: { org: 'acme', role: 'member' } },
    });
    org = world.org('acme');
    [officer, member] = [world.user('officer'), world.user('member')];
  });

  after(() => world?.stop());

  const logs = (query = '', token = officer.token) => org.as(token).get(`audit-logs${query}`);
  const newest = async (query = '') => {
    const res = await logs(query);
    assert.equal(res.status, 200);
    return res.body.entries as Entry[];
  };

  test('a mutation is recorded with actor, target, request id, client address and user agent; no email', async () => {
    const email = 'carol-audited@example.com';
    const res = await org
      .post('users')
      .set('user-agent', 'audit-e2e/1.0')
      .send({ email, displayName: 'Carol', role: 'member' });
    assert.equal(res.status, 201);
    const [entry] = await newest('?action=user.created&limit=1');
    assert.equal(entry.outcome, 'success');
    assert.deepEqual(
      { kind: entry.actor.kind, userId: entry.actor.userId, apiKeyId: entry.actor.apiKeyId },
      { kind: 'user', userId: org.adminUserId, apiKeyId: org.adminKeyId },
    );
    assert.equal(entry.target?.id, res.body.user.id);
    assert.equal(entry.requestId, res.headers['x-request-id']);
    assert.equal(entry.clientIp, '127.0.0.1');
    assert.equal(entry.userAgent, 'audit-e2e/1.0');
    assert.ok(!JSON.stringify(entry).includes('carol'), 'the audit entry names the user by id, not by email');
  });

  test('denied and invalid mutations are recorded as failures with their error codes', async () => {
    const denied = await org
      .as(member)
      .post('users')
      .send({ email: 'x@example.com', displayName: 'X', role: 'admin' });
    assert.equal(denied.status, 403);
    const invalid = await org.post('users').send({ email: 'nope' });
    assert.equal(invalid.status, 400);

    const failures = await newest('?outcome=failure&action=user.created');
    assert.deepEqual(
      failures.slice(0, 2).map((e) => [e.actor.userId, e.body.error, e.requestId]),
      [
        [org.adminUserId, { code: 'validation_failed', status: 400 }, invalid.headers['x-request-id']],
        [member.userId, { code: 'forbidden', status: 403 }, denied.headers['x-request-id']],
      ],
    );
  });

  test('sensitive reads are recorded: user listings with emails and audit-log reads', async () => {
    const list = await org.get('users');
    assert.equal(list.status, 200);
    const [listed] = await newest('?action=users.listed&limit=1');
    assert.equal(listed.requestId, list.headers['x-request-id']);
    const first = await logs('?limit=1');
    const [read] = await newest('?action=audit_log.read&limit=1');
    assert.equal(read.requestId, first.headers['x-request-id']);
    assert.equal(read.actor.userId, officer.userId);
  });

  test('only admins and security officers read the log; bad filters get 400 validation_failed', async () => {
    assert.equal((await logs('', member.token)).status, 403);
    assert.equal((await logs('', org.adminToken)).status, 200);
    for (const query of ['?limit=0', '?limit=1001', '?outcome=maybe', '?from=yesterday', '?cursor=-1', '?color=red']) {
      const res = await logs(query);
      assert.equal(res.status, 400, query);
      assert.equal(res.body.error.code, 'validation_failed', query);
    }
  });

  test('cursor pages are newest first and stay stable while entries are added', async () => {
    const page1 = await logs('?limit=3');
    const seqs1 = (page1.body.entries as Entry[]).map((e) => e.seq);
    assert.deepEqual(seqs1, [seqs1[0], seqs1[0] - 1, seqs1[0] - 2]);
    await world.addUser(org, 'member'); // new entries arrive between the pages
    const page2 = await logs(`?limit=3&cursor=${page1.body.nextCursor}`);
    const seqs2 = (page2.body.entries as Entry[]).map((e) => e.seq);
    assert.deepEqual(seqs2, [seqs1[2] - 1, seqs1[2] - 2, seqs1[2] - 3]);
  });

  test('filters by actor, outcome and time window', async () => {
    const byMember = await newest(`?actor=${member.userId}`);
    assert.ok(byMember.length >= 1);
    assert.ok(byMember.every((e) => e.actor.userId === member.userId));
    const future = await newest(`?from=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`);
    assert.deepEqual(future, []);
    const past = await newest(`?to=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}&outcome=success&limit=1000`);
    assert.ok(past.length > 5 && past.every((e) => e.outcome === 'success'));
  });

  test('Accept: application/x-ndjson streams every entry, newest first, one JSON object a line', async () => {
    const res = await logs().set('accept', 'application/x-ndjson');
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^application\/x-ndjson/);
    const lines = res.text.trim().split('\n').map((l) => JSON.parse(l) as Entry);
    assert.deepEqual(lines.map((e) => e.seq), Array.from({ length: lines.length }, (_, i) => lines.length - i));
  });

  test('verify answers 200 valid on an intact chain and names the first bad entry after tampering', async () => {
    const verify = () => org.as(officer).get('audit-logs/verify');
    const ok = await verify();
    assert.equal(ok.status, 200);
    assert.equal(ok.body.valid, true);
    assert.ok(ok.body.checkedThrough > 5);

    const client = await connectToOrgAsOwner(world.env, org.id);
    try {
      await client.query('ALTER TABLE audit_log DISABLE TRIGGER USER');
      await client.query(`UPDATE audit_log SET client_ip = '10.0.0.1' WHERE seq = 3`);
      await client.query('ALTER TABLE audit_log ENABLE TRIGGER USER');
    } finally {
      await client.end();
    }
    const bad = await verify();
    assert.equal(bad.status, 200);
    assert.deepEqual(
      { valid: bad.body.valid, checkedThrough: bad.body.checkedThrough, firstBadSequence: bad.body.firstBadSequence },
      { valid: false, checkedThrough: 2, firstBadSequence: 3 },
    );
    assert.match(bad.body.reason, /altered/);
  });

  test("the platform admin reads and verifies the control plane's chain", async () => {
    const res = await world.api.get('admin/audit-logs?action=organization.created');
    assert.equal(res.status, 200);
    assert.ok((res.body.entries as Entry[]).some((e) => e.target?.id === org.id));
    const verify = await world.api.get('admin/audit-logs/verify');
    assert.deepEqual(verify.body.valid, true);
    assert.equal((await world.api.as(org).get('admin/audit-logs')).status, 403);
  });

  test('a user agent is cut at 512 bytes, never inside a character', async () => {
    const agent = `ua-${'é'.repeat(600)}`;
    await org.get('users').set('user-agent', agent);
    const [listed] = await newest('?action=users.listed&limit=1');
    assert.ok(Buffer.byteLength(listed.userAgent!) <= 512 && Buffer.byteLength(listed.userAgent!) >= 511);
    assert.ok(agent.startsWith(listed.userAgent!));
  });
});

describe('audit trail: the client address behind a proxy (Fastify, PostgreSQL, Redis)', () => {
  for (const trusted of [false, true]) {
    test(`X-Forwarded-For is ${trusted ? 'used when the proxy is trusted' : 'ignored from an untrusted peer'}`, async () => {
      const world = await TestWorld.start({ config: trusted ? { TRUSTED_PROXIES: '127.0.0.1' } : {}, orgs: ['proxied'] });
      try {
        const org = world.org('proxied');
        await org
          .post('users')
          .set('x-forwarded-for', '198.51.100.23')
          .send({ email: 'proxied@example.com', displayName: 'P', role: 'member' });
        const res = await org.get('audit-logs?action=user.created&limit=1');
        assert.equal(res.body.entries[0].clientIp, trusted ? '198.51.100.23' : '127.0.0.1');
      } finally {
        await world.stop();
      }
    });
  }
});
