import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NestFactory } from '@nestjs/core';
import { WrappedKeys } from '@coffer/keys';
import { KMS, KmsProvider, orgKeyName } from '@coffer/kms';
import { CliModule } from '../../apps/cli/src/cli.module';
import { stopProcess } from '../support/api-process';
import type { OrgClient } from '../support/client';
import { tickAndAwait } from '../support/jobs';
import { connect, connectToOrgAsOwner } from '../support/test-env';
import { TestWorld } from '../support/world';

const BUCKET = 'customer-audit';

describe('org key rotation and rewrap (API and worker on PostgreSQL and Redis; Vault transit double and s3rver over HTTP)', () => {
  let world: TestWorld;
  let org: OrgClient;

  before(async () => {
    world = await TestWorld.start({
      vault: true,
      s3: [BUCKET],
      orgs: ['acme'],
      users: { officer: { org: 'acme', role: 'security_officer' } },
    });
    org = world.org('acme');
    // A stored data key to rewrap: the audit destination's credentials are sealed under one.
    const put = await org.put('audit-logs/destination').send(world.s3.destination(BUCKET, 'coffer'));
    assert.equal(put.status, 204);
  });

  after(() => world?.stop());

  const keys = () => org.as(world.user('officer')).get('keys');
  const rotate = (token = world.user('officer').token) => org.as(token).post('keys/rotate');
  const entries = async (action: string) =>
    (await org.get(`audit-logs?action=${action}`)).body.entries as {
      outcome: string;
      actor: Record<string, string>;
      body: Record<string, unknown>;
    }[];
  const storedWrappedKey = async () => {
    const owner = await connectToOrgAsOwner(world.env, org.id);
    try {
      return (await owner.query('SELECT credentials_key FROM audit_destination')).rows[0].credentials_key as string;
    } finally {
      await owner.end();
    }
  };
  const storedFieldKeys = async () => {
    const owner = await connectToOrgAsOwner(world.env, org.id);
    try {
      const { rows } = await owner.query(
        `SELECT wrapped, kms_key_version FROM field_keys UNION ALL SELECT wrapped_key, kms_key_version FROM spool_keys ORDER BY 1`,
      );
      return rows as { wrapped: string; kms_key_version: number }[];
    } finally {
      await owner.end();
    }
  };
  const controlAsOwner = async (sql: string) => {
    const owner = await connect(world.config.DATABASE_OWNER_URL);
    try {
      await owner.query(sql, [org.id]);
    } finally {
      await owner.end();
    }
  };
  const until = async <T>(what: string, probe: () => Promise<T | undefined>): Promise<T> => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };

  test('GET keys shows version 1, the stored data keys it wraps and a rotation 90 days after provisioning', async () => {
    const res = await keys();
    assert.equal(res.status, 200);
    assert.equal(res.body.keyName, orgKeyName(org.id));
    assert.equal(res.body.provider, 'vault');
    assert.equal(res.body.latestVersion, 1);
    assert.deepEqual(
      res.body.versions.map((v: { version: number; wrappedDataKeys: number }) => [v.version, v.wrappedDataKeys]),
      [[1, 4]],
      'the field key, the blind-index key, the spool key and the destination credentials key',
    );
    const days = (Date.parse(res.body.nextRotationAt) - Date.now()) / 86_400_000;
    assert.ok(days > 89.9 && days <= 90, `next rotation in ${days} days`);
    assert.equal(res.body.lastRotatedAt, null);
  });

  test('only admins and security officers may rotate; a rotation adds a version and is audited with both versions', async () => {
    const member = await world.addUser(org, 'member');
    assert.equal((await rotate(member.token)).status, 403);
    const res = await rotate();
    assert.equal(res.status, 200);
    assert.deepEqual([res.body.previousVersion, res.body.version], [1, 2]);
    const after = await keys();
    assert.equal(after.body.latestVersion, 2);
    assert.ok(Date.parse(after.body.lastRotatedAt) > Date.now() - 60_000, 'last_rotated moved');
    const [rotated] = await entries('kms.key.rotated');
    assert.deepEqual([rotated.body.previousVersion, rotated.body.version, rotated.body.reason], [1, 2, 'manual']);
    assert.equal(rotated.actor.kind, 'user');
    const requests = await entries('kms.key.rotation_requested');
    assert.deepEqual(requests.map((e) => e.outcome).sort(), ['failure', 'success'], "the member's refusal is audited too");
  });

  test("the worker's rewrap job moves the stored data key to the new version without changing it", async () => {
    const before = await storedWrappedKey();
    assert.match(before, /^vault:v1:/);
    await world.startWorker({ KEY_RETIRE_OLD_VERSIONS: true });
    const done = await until('the rewrap', async () => {
      const res = await keys();
      return res.body.rewrap.remaining === 0 && res.body.versions[1]?.wrappedDataKeys === 4 ? res.body : undefined;
    });
    assert.equal(done.versions[0].wrappedDataKeys, 0, 'nothing left on version 1');
    const after = await storedWrappedKey();
    assert.match(after, /^vault:v2:/);
    const kms = world.app.get<KmsProvider>(KMS);
    assert.ok((await kms.unwrap(orgKeyName(org.id), before)).equals(await kms.unwrap(orgKeyName(org.id), after)), 'same data key');
    const [rewrapped] = await entries('kms.keys.rewrapped');
    assert.deepEqual([rewrapped.body.version, rewrapped.body.rewrapped, rewrapped.body.remaining], [2, 4, 0]);
    const fieldKeys = await storedFieldKeys();
    assert.deepEqual(
      fieldKeys.map((k) => [k.wrapped.slice(0, 9), k.kms_key_version]),
      [['vault:v2:', 2], ['vault:v2:', 2], ['vault:v2:', 2]],
      'the field and index keys and the spool key',
    );
    assert.equal(rewrapped.actor.id, 'system:rewrap-keys');
    const shown = await org.get('audit-logs/destination');
    assert.equal(shown.status, 200, 'the destination still reads');
    assert.equal(done.minDecryptionVersion, 1, 'old versions are not retired before the grace period');
  });

  test('the API, the worker and the CLI each find every column that stores a wrapped key, and the org database has no other', async () => {
    const expected = [
      'audit_destination.credentials_key',
      'field_keys.wrapped',
      'link_keys.wrapped_key',
      'package_versions.wrapped_dek',
      'spool_keys.wrapped_key',
    ];
    assert.deepEqual(world.app.get(WrappedKeys).columns(), expected);
    assert.deepEqual(world.worker.get(WrappedKeys).columns(), expected);
    const cli = await NestFactory.createApplicationContext(CliModule.register(world.config), { logger: false });
    try {
      assert.deepEqual(cli.get(WrappedKeys).columns(), expected);
    } finally {
      await cli.close();
    }
    const owner = await connectToOrgAsOwner(world.env, org.id);
    try {
      const { rows: columns } = await owner.query<{ table_name: string; column_name: string }>(
        `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' AND data_type = 'text'`,
      );
      const holding: string[] = [];
      for (const { table_name: table, column_name: column } of columns) {
        const { rows } = await owner.query(`SELECT 1 FROM "${table}" WHERE "${column}" ~ '^(vault|local):v[0-9]+:' LIMIT 1`);
        if (rows.length) holding.push(`${table}.${column}`);
      }
      // Checkpoint signatures look alike but are made by the chain's own signing key: nothing to rewrap.
      const wrapped = holding.filter((c) => c !== 'audit_checkpoints.signature');
      assert.deepEqual(wrapped.filter((c) => !expected.includes(c)), [], 'every stored wrapped value is in a registered column');
      assert.ok(wrapped.length >= 3, `found ${holding.join(', ')}`);
    } finally {
      await owner.end();
    }
  });

  test('a key past its next rotation is rotated once by the sweep, however often it ticks', async () => {
    await controlAsOwner(`UPDATE org_keys SET next_rotation_at = now() - interval '1 minute' WHERE org_id = $1`);
    const sweep = () => tickAndAwait<{ rotations: number; rewraps: number }>(world.worker, 'find-key-rotations');
    const [first] = await sweep();
    assert.ok(first.rotations >= 1);
    await sweep();
    const res = await until('the scheduled rotation', async () => {
      const r = await keys();
      return r.body.latestVersion === 3 && r.body.rewrap.remaining === 0 ? r.body : undefined;
    });
    assert.ok(Date.parse(res.nextRotationAt) > Date.now() + 89 * 86_400_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal((await keys()).body.latestVersion, 3, 'rotated once');
    const scheduled = (await entries('kms.key.rotated')).filter((e) => e.body.reason === 'scheduled');
    assert.equal(scheduled.length, 1);
    assert.equal(scheduled[0].actor.id, 'system:rotate-key');
  });

  test('with KEY_RETIRE_OLD_VERSIONS, versions are retired once the rewrap is complete and the grace has passed', async () => {
    await controlAsOwner(`UPDATE org_keys SET last_rotated_at = now() - interval '2 days' WHERE org_id = $1`);
    const [found] = await tickAndAwait<{ rewraps: number }>(world.worker, 'find-key-rotations');
    assert.equal(found.rewraps, 1);
    const res = await until('the retirement', async () => {
      const r = await keys();
      return r.body.minDecryptionVersion === 3 ? r.body : undefined;
    });
    assert.equal(res.versions.find((v: { version: number }) => v.version === 3).wrappedDataKeys, 4);
    const [retired] = await entries('kms.key.old_versions_retired');
    assert.equal(retired.body.minDecryptionVersion, 3);
    assert.equal((await org.get('audit-logs/destination')).status, 200);
    // A process that starts now has nothing cached: every field key must unwrap under version 3.
    const fresh = await world.startApiProcess();
    try {
      const users = await fetch(org.at(fresh.url).url('users'), { headers: org.headers() });
      assert.equal(users.status, 200);
      const body = (await users.json()) as { users: { email: string }[] };
      assert.ok(body.users.some((u) => u.email.startsWith('admin@')), 'emails still decrypt');
    } finally {
      await stopProcess(fresh.child);
    }
  });

  test('a sealed KMS: reading or rotating the key answers 503 kms_unavailable with Retry-After, and the refusal is audited', async () => {
    world.vault.seal();
    try {
      const read = await keys();
      assert.equal(read.status, 503);
      assert.equal(read.body.error.code, 'kms_unavailable');
      assert.ok(Number(read.headers['retry-after']) > 0);
      const res = await rotate();
      assert.equal(res.status, 503);
      assert.equal(res.body.error.code, 'kms_unavailable');
      assert.ok(!JSON.stringify(res.body).includes(world.vault.token), 'no Vault token in the answer');
    } finally {
      world.vault.unseal();
    }
    const failures = (await entries('kms.key.rotation_requested')).filter((e) => e.outcome === 'failure');
    assert.ok(failures.some((e) => (e.body.error as { code: string }).code === 'kms_unavailable'));
  });
});
