import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { formatOrgKey, generateSecret, hashSecret, PlaintextFieldCodec, randomId } from '@coffer/crypto';
import { withDatabase } from '@coffer/database';
import { FieldKeysService, ORG_SETTING_VALUE, sealLegacyRows, USER_EMAIL } from '@coffer/fields';
import { CachingKmsProvider, KMS } from '@coffer/kms';
import { OrgProvisioner, OrgSettingsRepository } from '@coffer/orgs';
import { OrgRef, OrgRegistry } from '@coffer/tenancy';
import { createApi } from '../../apps/api/src/bootstrap';
import { migrateInstallation } from '../../apps/cli/src/migrate';
import type { OrgClient } from '../support/client';
import { connect, TestEnv } from '../support/test-env';
import { TestWorld } from '../support/world';

/** `pg_dump` of one org database, run as the superuser: what a stolen backup would hold. */
function dumpOrg(env: TestEnv, databaseName: string): string {
  return execFileSync('pg_dump', ['--dbname', withDatabase(env.adminUrl, databaseName)], { encoding: 'utf8', maxBuffer: 64 << 20 });
}

/** Whether a value appears in a dump as text, or as the hex (bytea) or base64 of its bytes. */
function leaks(dump: string, value: string | Buffer): boolean {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  const forms = [bytes.toString('hex'), bytes.toString('base64')];
  if (typeof value === 'string') forms.push(value, value.toLowerCase());
  return forms.some((form) => dump.includes(form));
}

async function asOwner<T>(env: TestEnv, org: OrgRef, fn: (owner: Awaited<ReturnType<typeof connect>>) => Promise<T>): Promise<T> {
  const owner = await connect(env.config.DATABASE_OWNER_URL, org.databaseName);
  try {
    return await fn(owner);
  } finally {
    await owner.end();
  }
}

describe('encrypted fields: emails, API key hashes and settings sealed per org (PostgreSQL, local KMS)', () => {
  let world: TestWorld;
  let org: OrgClient;
  let ref: OrgRef;

  before(async () => {
    world = await TestWorld.start({ orgs: ['acme'] });
    org = world.org('acme');
    ref = await world.app.get(OrgRegistry).resolve(org.slug);
  });

  after(() => world?.stop());

  test('a pg_dump of the org database holds no user email, API key, key hash or setting value in clear', async () => {
    const email = `Dana.Secret-${randomId(3)}@example.org`;
    const dana = await world.addUser(org, 'member', email);
    const setting = `smtp-password-${randomId()}`;
    await world.app.get(OrgSettingsRepository).set(ref, 'smtp.password', setting);
    assert.equal(await world.app.get(OrgSettingsRepository).get(ref, 'smtp.password'), setting);

    const dump = dumpOrg(world.env, ref.databaseName);
    assert.ok(dump.includes('smtp.password') && dump.includes('COPY public.users'), 'the dump holds the tables (keys and names in clear)');
    for (const token of [org.adminToken, dana.token]) {
      const secret = token.split('.').pop()!;
      assert.equal(leaks(dump, token), false, 'an API key');
      assert.equal(leaks(dump, secret), false, "an API key's secret");
      assert.equal(leaks(dump, hashSecret(secret)), false, "an API key's SHA-256");
    }
    assert.equal(leaks(dump, email), false, 'a user email');
    assert.equal(leaks(dump, `admin@${org.slug}.example`), false, "the admin's email");
    assert.equal(leaks(dump, setting), false, 'a setting value');

    // ...and what the API gives back is the plaintext: the keys and the index work.
    const got = await org.get(`users/${dana.userId}`);
    assert.equal(got.body.user.email, email.toLowerCase());
    assert.equal((await org.as(dana).get()).status, 200);
  });

  test('an email copied into another row or column fails with 500 field_decryption_failed, naming no value', async () => {
    const a = await world.addUser(org, 'member');
    const b = await world.addUser(org, 'member');
    const c = await world.addUser(org, 'member');
    const aEmail = (await org.get(`users/${a.userId}`)).body.user.email;
    await world.app.get(OrgSettingsRepository).set(ref, 'copied.value', 'x@example.org');
    await asOwner(world.env, ref, async (owner) => {
      await owner.query('UPDATE users SET email = (SELECT email FROM users WHERE id = $1) WHERE id = $2', [a.userId, b.userId]);
      await owner.query(`UPDATE users SET email = (SELECT value FROM org_settings WHERE key = 'copied.value') WHERE id = $1`, [c.userId]);
    });
    for (const moved of [b.userId, c.userId]) {
      const res = await org.get(`users/${moved}`);
      assert.equal(res.status, 500);
      assert.equal(res.body.error.code, 'field_decryption_failed');
      assert.ok(!res.text.includes(aEmail) && !res.text.includes('x@example.org') && !/\bat \w/.test(res.text), 'no value, no stack');
    }
    const untouched = await org.get(`users/${a.userId}`);
    assert.equal(untouched.body.user.email, aEmail);
    // Remove them so that the list route works for the other tests.
    await asOwner(world.env, ref, async (owner) => {
      await owner.query('DELETE FROM api_keys WHERE user_id = ANY($1)', [[b.userId, c.userId]]);
      await owner.query('DELETE FROM users WHERE id = ANY($1)', [[b.userId, c.userId]]);
    });
  });

  test('a key hash copied onto another key does not authenticate it; a setting copied under another key fails', async () => {
    const a = await world.addUser(org, 'member');
    const b = await world.addUser(org, 'member');
    await asOwner(world.env, ref, (owner) =>
      owner.query('UPDATE api_keys SET secret_hash = (SELECT secret_hash FROM api_keys WHERE id = $1) WHERE id = $2', [a.keyId, b.keyId]),
    );
    // b's row now holds a's sealed hash: neither a's secret nor b's own opens b's key.
    const forged = formatOrgKey(org.id, b.keyId, a.token.split('.').pop()!);
    for (const token of [forged, b.token]) {
      const res = await org.as(token).get();
      assert.equal(res.status, 500);
      assert.equal(res.body.error.code, 'field_decryption_failed');
    }
    assert.equal((await org.as(a).get()).status, 200);
    await asOwner(world.env, ref, (owner) => owner.query('DELETE FROM api_keys WHERE id = $1', [b.keyId]));

    const settings = world.app.get(OrgSettingsRepository);
    await settings.set(ref, 'webhook.secret', 'w-secret');
    await settings.set(ref, 'webhook.other', 'other');
    await asOwner(world.env, ref, (owner) =>
      owner.query(`UPDATE org_settings SET value = (SELECT value FROM org_settings WHERE key = 'webhook.secret') WHERE key = 'webhook.other'`),
    );
    await assert.rejects(settings.get(ref, 'webhook.other'), { code: 'field_decryption_failed' });
    assert.equal(await settings.get(ref, 'webhook.secret'), 'w-secret');
    await asOwner(world.env, ref, (owner) => owner.query(`DELETE FROM org_settings WHERE key = 'webhook.other'`));
  });

  test('emails are found and kept unique through a keyed blind index, different in every org', async () => {
    const email = `Shared-${randomId(3)}@example.org`;
    const first = await org.post('users').send({ email, displayName: 'S', role: 'member' });
    assert.equal(first.status, 201);
    const again = await org.post('users').send({ email: `  ${email.toUpperCase()} `, displayName: 'S2', role: 'member' });
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'user_email_taken');

    const other = await world.createOrg();
    const otherRef = await world.app.get(OrgRegistry).resolve(other.slug);
    await other.post('users').send({ email, displayName: 'S', role: 'member' });
    const indexOf = (r: OrgRef, id?: string) =>
      asOwner(world.env, r, async (owner) => {
        const { rows } = await owner.query<{ email_index: Buffer }>(
          id ? 'SELECT email_index FROM users WHERE id = $1' : `SELECT email_index FROM users WHERE display_name = 'S'`,
          id ? [id] : [],
        );
        return rows[0].email_index;
      });
    const here = await indexOf(ref, first.body.user.id);
    assert.notDeepEqual(here, await indexOf(otherRef), 'the same email has unrelated indexes in two orgs');
    assert.notDeepEqual(here, new PlaintextFieldCodec().index(email.toLowerCase(), USER_EMAIL), 'the index is keyed, not a bare hash');
  });

  test('each org gets its own KMS key at provisioning, audited with its name and version in the creating request', async () => {
    const slug = `audited-${randomId(3)}`;
    const res = await world.api.post('organizations').send({ slug, name: 'Audited' });
    assert.equal(res.status, 201);
    const requestId = res.headers['x-request-id'];
    const keyName = `coffer-org-${res.body.organization.id}`;
    const info = await world.app.get<CachingKmsProvider>(KMS).keyInfo(keyName);
    assert.equal(info.latestVersion, 1);
    const log = await world.api.get('admin/audit-logs?limit=50');
    type Entry = { action: string; requestId: string; body: Record<string, unknown> };
    const mine = (log.body.entries as Entry[]).filter((e) => e.requestId === requestId);
    const created = mine.find((e) => e.action === 'kms.key.created');
    assert.deepEqual(created?.body, { keyName, keyVersion: 1 });
    assert.deepEqual(
      mine.filter((e) => e.action === 'kms.data_key.created').map((e) => e.body.purpose).sort(),
      ['field', 'index', 'spool'],
    );
    assert.ok(mine.some((e) => e.action === 'organization.created'));
  });

  test('rows written before encryption (format 0) are sealed at the next API start, in batches, and still read', async () => {
    const legacy = {
      id: randomId(),
      email: `legacy-${randomId(3)}@example.org`,
      keyId: randomId(),
      secret: generateSecret(),
      setting: `legacy-${randomId()}`,
    };
    const plain = new PlaintextFieldCodec();
    const plant = (owner: Awaited<ReturnType<typeof connect>>, id: string, email: string) =>
      owner.query(`INSERT INTO users (id, email, email_index, display_name, role) VALUES ($1, $2, $3, 'Legacy', 'member')`, [
        id,
        plain.seal(email, { ...USER_EMAIL, rowId: id }),
        plain.index(email, USER_EMAIL),
      ]);
    await asOwner(world.env, ref, async (owner) => {
      await plant(owner, legacy.id, legacy.email);
      // API key hashes were stored bare (32 bytes, no format byte).
      await owner.query(`INSERT INTO api_keys (id, user_id, name, secret_hash) VALUES ($1, $2, 'legacy', $3)`, [
        legacy.keyId,
        legacy.id,
        hashSecret(legacy.secret),
      ]);
      await owner.query(`INSERT INTO org_settings (key, value) VALUES ('legacy.setting', $1)`, [
        plain.seal(legacy.setting, { ...ORG_SETTING_VALUE, rowId: 'legacy.setting' }),
      ]);
    });
    const before = dumpOrg(world.env, ref.databaseName);
    const planted = [legacy.email, legacy.setting, hashSecret(legacy.secret)];
    assert.ok(planted.every((value) => leaks(before, value)), 'the planted rows are in clear: the leak check sees bytea');

    // An upgrade: `coffer migrate` seals what it finds in the org's database, then another API serves.
    await migrateInstallation(world.config);
    const second: NestFastifyApplication = await createApi(world.config);
    try {
      await second.listen({ host: '127.0.0.1', port: 0 });
      const fresh = org.at(await second.getUrl());
      const after = dumpOrg(world.env, ref.databaseName);
      assert.equal(planted.some((value) => leaks(after, value)), false);
      const stored = await asOwner(world.env, ref, async (owner) => ({
        email: (await owner.query('SELECT get_byte(email, 0) AS f FROM users WHERE id = $1', [legacy.id])).rows[0].f,
        hash: (await owner.query('SELECT length(secret_hash) AS n, get_byte(secret_hash, 0) AS f FROM api_keys WHERE id = $1', [legacy.keyId]))
          .rows[0],
        setting: (await owner.query(`SELECT get_byte(value, 0) AS f FROM org_settings WHERE key = 'legacy.setting'`)).rows[0].f,
        all: (await owner.query(`SELECT id, email, email_index FROM users ORDER BY id`)).rows,
      }));
      assert.deepEqual({ email: stored.email, hash: stored.hash, setting: stored.setting }, { email: 1, hash: { n: 65, f: 1 }, setting: 1 });

      const token = formatOrgKey(org.id, legacy.keyId, legacy.secret);
      assert.equal((await fresh.as(token).get()).status, 200, 'the old key still authenticates');
      const user = await fresh.get(`users/${legacy.id}`);
      assert.equal(user.body.user.email, legacy.email);
      const duplicate = await fresh
        .post('users')
        .send({ email: legacy.email, displayName: 'D', role: 'member' });
      assert.equal(duplicate.body.error?.code, 'user_email_taken', 'the re-computed index still guards uniqueness');
      assert.equal(await second.get(OrgSettingsRepository).get(ref, 'legacy.setting'), legacy.setting);

      // Idempotent: provisioning again changes no stored byte.
      await world.provisioner.get(OrgProvisioner).provision(ref);
      const again = await asOwner(world.env, ref, async (owner) => (await owner.query(`SELECT id, email, email_index FROM users ORDER BY id`)).rows);
      assert.deepEqual(again, stored.all);
      const keys = await asOwner(world.env, ref, async (owner) => (await owner.query('SELECT purpose FROM field_keys ORDER BY id')).rows);
      assert.deepEqual(keys, [{ purpose: 'field' }, { purpose: 'index' }], 'no second set of keys');

      // In batches: five more legacy rows, two per transaction, all sealed.
      const ids = Array.from({ length: 5 }, () => randomId());
      const codec = await second.get(FieldKeysService).codec(ref);
      const sealed = await asOwner(world.env, ref, async (owner) => {
        for (const id of ids) await plant(owner, id, `${id}@example.org`);
        return sealLegacyRows(owner, codec, 2);
      });
      assert.equal(sealed, 5);
      for (const id of ids) {
        const res = await fresh.get(`users/${id}`);
        assert.equal(res.body.user.email, `${id}@example.org`);
      }
    } finally {
      await second.close();
    }
  });
});

describe('field keys and the KMS: cached DEKs, outages (Vault transit double over HTTP)', () => {
  let world: TestWorld;
  let org: OrgClient;

  before(async () => {
    // Key credentials read (and the hash decrypted) on every request: the DEK cache alone saves KMS calls.
    world = await TestWorld.start({ vault: true, config: { API_KEY_CACHE_TTL_MS: '0' }, orgs: ['acme'] });
    org = world.org('acme');
  });

  after(() => world?.stop());

  test('steady state makes no KMS call per request (Vault transit double)', async () => {
    const member = await world.addUser(org, 'member');
    const before = world.vault.requests.length;
    for (let i = 0; i < 10; i++) {
      assert.equal((await org.get('users')).status, 200);
      assert.equal((await org.as(member).get()).status, 200);
    }
    await world.addUser(org, 'member');
    assert.deepEqual(world.vault.requests.slice(before), [], '22 requests, reads, writes and key checks, and no call to Vault');
  });

  test('with the DEK cached, reads keep working while Vault is sealed (Vault transit double)', async () => {
    world.vault.seal();
    try {
      assert.equal((await org.get('users')).status, 200);
    } finally {
      world.vault.unseal();
    }
  });

  test('with the DEK not cached, a sealed or unreachable Vault answers 503 kms_unavailable, no stack (Vault transit double)', async () => {
    const cache = world.app.get<CachingKmsProvider>(KMS).cache;
    for (const outage of ['sealed', 'down'] as const) {
      cache.clear();
      if (outage === 'sealed') world.vault.seal();
      else await world.vault.stop();
      try {
        const read = await org.get('users');
        const write = await org
          .post('users')
          .send({ email: `x-${randomId(3)}@example.org`, displayName: 'X', role: 'member' });
        for (const res of [read, write]) {
          assert.equal(res.status, 503, `${outage}: ${res.text}`);
          assert.equal(res.body.error.code, 'kms_unavailable');
          assert.ok(!/\bat \w|\.ts:|\.js:/.test(res.text), 'no stack trace');
        }
      } finally {
        world.vault.unseal();
        await world.vault.start();
      }
      assert.equal((await org.get('users')).status, 200, 'back once Vault is');
    }
  });

  test('creating an org while Vault is sealed answers 503 kms_unavailable (Vault transit double)', async () => {
    world.vault.seal();
    try {
      const res = await world.api.post('organizations').send({ slug: `sealed-${randomId(3)}`, name: 'Sealed' });
      assert.equal(res.status, 503);
      assert.equal(res.body.error.code, 'kms_unavailable');
    } finally {
      world.vault.unseal();
    }
  });
});
