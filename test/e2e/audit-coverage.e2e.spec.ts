import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { OrgClient, TestUser } from '../support/client';
import { TestWorld } from '../support/world';

interface Entry {
  seq: number;
  action: string;
  outcome: 'success' | 'failure';
  actor: Record<string, unknown>;
  target: Record<string, unknown> | null;
  body: Record<string, unknown>;
}

const BUCKET = 'coverage';

/** What the audit trail must hold about org creation, refused reads, destinations and keys. */
describe('audit coverage: org creation, refused reads, destination changes, platform-admin keys', () => {
  let world: TestWorld;
  let org: OrgClient;
  let member: TestUser;

  before(async () => {
    world = await TestWorld.start({ s3: [BUCKET], orgs: ['cover'] });
    org = world.org('cover');
    member = await world.addUser(org, 'member');
  });
  after(() => world?.stop());

  const orgEntries = async (query: string) => (await org.get(`audit-logs?${query}`)).body.entries as Entry[];
  const controlEntries = async (query: string) => (await world.api.get(`admin/audit-logs?${query}`)).body.entries as Entry[];

  test("an org's first admin and their first key are in the org's own chain; the control plane's entry names slug and name", async () => {
    const res = await world.api
      .post('organizations')
      .send({ slug: 'covered', name: 'Covered Inc', admin: { email: 'root@covered.example', displayName: 'Root' } });
    assert.equal(res.status, 201);
    const covered = world.api.org('covered').as(res.body.admin.apiKey.secret);
    const entries = ((await covered.get('audit-logs?limit=100')).body.entries as Entry[]).filter((e) => e.action !== 'audit_log.read');
    const created = entries.filter((e) => e.action === 'user.created' || e.action === 'api_key.created').reverse();
    assert.deepEqual(
      created.map((e) => [e.action, e.outcome, e.actor.kind, e.target]),
      [
        ['user.created', 'success', 'platform_admin', { id: res.body.admin.user.id }],
        ['api_key.created', 'success', 'platform_admin', { id: res.body.admin.apiKey.id, userId: res.body.admin.user.id }],
      ],
    );
    assert.ok(!JSON.stringify(created).includes(res.body.admin.apiKey.secret), 'never the secret');
    assert.equal((await covered.get('audit-logs/verify')).body.valid, true);

    const [control] = await controlEntries('action=organization.created&limit=1');
    assert.deepEqual([control.outcome, control.target, control.body], ['success', { id: res.body.organization.id }, { slug: 'covered', name: 'Covered Inc' }]);
  });

  test('a failed organization.created has no target and records the attempted slug', async () => {
    const again = await world.api.post('organizations').send({ slug: 'cover', name: 'Again' });
    assert.deepEqual([again.status, again.body.error.code], [409, 'organization_exists']);
    const [failed] = await controlEntries('action=organization.created&outcome=failure&limit=1');
    assert.deepEqual([failed.target, failed.body], [null, { slug: 'cover', name: 'Again', error: { code: 'organization_exists', status: 409 } }]);
    // Refused by validation too (the name is missing): the slug asked for is recorded.
    const invalid = await world.api.post('organizations').send({ slug: 'Not A Slug!' });
    assert.deepEqual([invalid.status, invalid.body.error.code], [400, 'validation_failed']);
    const [refused] = await controlEntries('action=organization.created&outcome=failure&limit=1');
    assert.deepEqual([refused.target, refused.body.slug, refused.body.error], [null, 'Not A Slug!', { code: 'validation_failed', status: 400 }]);
  });

  test('three concurrent creations of one slug: one 201, two 409 organization_exists, nothing half-made', async () => {
    const create = () => world.api.post('organizations').send({ slug: 'racing', name: 'Racing', admin: { email: 'root@racing.example', displayName: 'Root' } });
    const answers = await Promise.all([create(), create(), create()]);
    assert.deepEqual(answers.map((r) => [r.status, r.body.error?.code]).sort(), [
      [201, undefined],
      [409, 'organization_exists'],
      [409, 'organization_exists'],
    ]);
    const winner = answers.find((r) => r.status === 201)!;
    const racing = world.api.org('racing').as(winner.body.admin.apiKey.secret);
    assert.equal((await racing.get('users')).body.users.length, 1, 'one first admin');
    assert.equal((await racing.get('api-keys')).body.apiKeys.length, 1, 'one first key');
    const listed = (await world.api.get('organizations')).body.organizations.filter((o: { slug: string }) => o.slug === 'racing');
    assert.deepEqual(listed.map((o: { status: string }) => o.status), ['active']);
  });

  test('a member refused a read by role leaves a failure entry in their org chain, for every such read', async () => {
    const reads = ['audit-logs', 'audit-logs/verify', 'users', `users/${org.adminUserId}`, 'keys', 'encryption-status'];
    for (const path of reads) {
      const before = (await orgEntries('outcome=failure&limit=1'))[0]?.seq ?? 0;
      const res = await org.as(member).get(path);
      assert.deepEqual([path, res.status, res.body.error.code], [path, 403, 'forbidden']);
      const [entry] = await orgEntries('outcome=failure&limit=1');
      assert.ok(entry && entry.seq > before, `GET ${path} refused without a trace`);
      assert.deepEqual([entry.actor.userId, entry.body.error], [member.userId, { code: 'forbidden', status: 403 }]);
    }
  });

  test('the platform admin may not issue a key to an org user: 403 impersonation_refused, audited', async () => {
    const res = await world.api.org('cover').post(`users/${org.adminUserId}/api-keys`).send({ name: 'impersonate' });
    assert.deepEqual([res.status, res.body.error.code], [403, 'impersonation_refused']);
    const [entry] = await orgEntries('action=api_key.created&outcome=failure&limit=1');
    assert.deepEqual(
      [entry.actor.kind, entry.target?.userId, entry.body.error],
      ['platform_admin', org.adminUserId, { code: 'impersonation_refused', status: 403 }],
    );
    const keys = (await org.get('api-keys')).body.apiKeys as { name: string }[];
    assert.ok(!keys.some((k) => k.name === 'impersonate'), 'no key was made');
  });

  test('a destination change records where the log went and where it goes now, never the credentials', async () => {
    const first = world.s3.destination(BUCKET, 'one');
    assert.equal((await org.put('audit-logs/destination').send(first)).status, 204);
    const second = world.s3.destination(BUCKET, 'two');
    assert.equal((await org.put('audit-logs/destination').send(second)).status, 204);
    const [changed, set] = await orgEntries('action=audit_destination.configured&limit=2');
    const place = (d: typeof first) => ({ endpoint: d.endpoint, region: 'us-east-1', bucket: d.bucket, prefix: `${d.prefix}/` });
    assert.deepEqual(set.body, { previous: null, destination: place(first) });
    assert.deepEqual(changed.body, { previous: place(first), destination: place(second) });
    const text = JSON.stringify([changed, set]);
    assert.ok(!text.includes(first.secretAccessKey) && !text.includes(first.accessKeyId), 'never the credentials');
  });
});
