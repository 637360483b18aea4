import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from 'pg';
import {
  applyGrants,
  ensureDatabase,
  latestVersion,
  migrate,
  orgMigrations,
  SchemaService,
  SchemaTooNewError,
  withClient,
  withDatabase,
} from '@coffer/database';
import { OrgProvisioner } from '@coffer/orgs';
import { OrgRef } from '@coffer/tenancy';
import { testProvisioner, TestProvisioner } from '../support/provisioner';
import { connect, createTestEnv, TestEnv } from '../support/test-env';

/** Everything provisioning is responsible for, in a form two orgs can be compared by. */
async function snapshot(env: TestEnv, org: OrgRef) {
  const admin = await connect(env.adminUrl, org.databaseName);
  try {
    const q = async (sql: string, params: unknown[] = []) => (await admin.query(sql, params)).rows;
    const registry = await withClient(env.config.DATABASE_OWNER_URL, (c) =>
      c.query('SELECT status, provisioned_at IS NOT NULL AS provisioned FROM organizations WHERE id = $1', [org.id]),
    );
    return {
      registry: registry.rows[0],
      migrations: await q('SELECT version, name FROM coffer_migrations ORDER BY version'),
      tables: await q(`SELECT tablename, tableowner = $1 AS owned_by_owner FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`, [
        env.ownerRole,
      ]),
      appPrivileges: await q(
        `SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type) AS privileges
         FROM information_schema.role_table_grants WHERE grantee = $1 GROUP BY table_name ORDER BY 1`,
        [env.appRole],
      ),
      triggers: await q(`SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1`),
      connect: await q(
        `SELECT has_database_privilege($1, current_database(), 'CONNECT') AS app,
                has_database_privilege('public', current_database(), 'CONNECT') AS public`,
        [env.appRole],
      ),
    };
  } finally {
    await admin.end();
  }
}

describe('org provisioning is idempotent and completes half-finished orgs (PostgreSQL)', () => {
  let env: TestEnv;
  let provisioner: OrgProvisioner;
  let provisioning: TestProvisioner;
  let reference: Awaited<ReturnType<typeof snapshot>>;

  const provisionFully = async (org: OrgRef) => {
    await provisioner.provision(org);
    return provisioner.activate(org);
  };

  before(async () => {
    env = await createTestEnv();
    await new SchemaService(env.config).migrateControlPlane();
    provisioning = testProvisioner(env);
    provisioner = provisioning.provisioner;
    const { org } = await provisioner.register('reference', 'Reference');
    reference = await snapshot(env, await provisionFully(org));
  });

  after(async () => {
    await provisioning?.close();
    await env?.destroy();
  });

  test('a fresh org has the full schema, the app role grants and the triggers', () => {
    assert.equal(reference.migrations.length, latestVersion(orgMigrations));
    assert.deepEqual(reference.registry, { status: 'active', provisioned: true });
    assert.ok(reference.tables.every((t) => t.owned_by_owner));
    assert.deepEqual(
      reference.appPrivileges.find((p) => p.table_name === 'audit_log'),
      { table_name: 'audit_log', privileges: 'INSERT,SELECT' },
    );
    assert.deepEqual(reference.connect, [{ app: true, public: false }]);
    assert.deepEqual(reference.triggers.map((t) => t.tgname), [
      'audit_checkpoints_no_truncate',
      'audit_checkpoints_no_update_delete',
      'audit_log_chain',
      'audit_log_no_truncate',
      'audit_log_no_update_delete',
    ]);
  });

  test('provisioning the same org twice ends in the same state', async () => {
    const { org } = await provisioner.register('twice', 'Twice');
    const first = await snapshot(env, await provisionFully(org));
    const again = await provisioner.register('twice', 'Twice');
    assert.equal(again.created, false);
    assert.equal(again.org.id, org.id);
    const second = await snapshot(env, await provisionFully(again.org));
    assert.deepEqual(second, first);
    assert.deepEqual(second, reference);
  });

  test('an org registered but without a database is completed', async () => {
    const { org } = await provisioner.register('no-db', 'No database');
    assert.deepEqual(await snapshot(env, await provisionFully(org)), reference);
  });

  test('an org whose database exists but was never migrated is completed', async () => {
    const { org } = await provisioner.register('no-schema', 'No schema');
    await withClient(withDatabase(env.config.DATABASE_OWNER_URL, 'postgres'), (c) => ensureDatabase(c, org.databaseName, env.appRole));
    assert.deepEqual(await snapshot(env, await provisionFully(org)), reference);
  });

  test('an org migrated but never granted (crash before grants) is completed', async () => {
    const { org } = await provisioner.register('no-grants', 'No grants');
    await withClient(withDatabase(env.config.DATABASE_OWNER_URL, 'postgres'), (c) => ensureDatabase(c, org.databaseName, env.appRole));
    await withClient(withDatabase(env.config.DATABASE_OWNER_URL, org.databaseName), async (c) => {
      await migrate(c, orgMigrations);
      await applyGrants(c, env.appRole, {});
    });
    const app = await connect(env.config.DATABASE_APP_URL, org.databaseName);
    await assert.rejects(app.query('SELECT * FROM users'), /permission denied/);
    await app.end();
    assert.deepEqual(await snapshot(env, await provisionFully(org)), reference);
  });

  test('an org from before the write spool (schema 5) gets its spool key at the next provisioning run, once; the app role cannot replace it', async () => {
    const { org } = await provisioner.register('pre-spool', 'Before the spool');
    await withClient(withDatabase(env.config.DATABASE_OWNER_URL, 'postgres'), (c) => ensureDatabase(c, org.databaseName, env.appRole));
    await withClient(withDatabase(env.config.DATABASE_OWNER_URL, org.databaseName), (c) =>
      migrate(c, { name: 'org', migrations: orgMigrations.migrations.filter((m) => m.version <= 5) }),
    );
    const spoolKeys = async () => {
      const admin = await connect(env.adminUrl, org.databaseName);
      try {
        return (await admin.query('SELECT id, wrapped_key, kms_key_version, length(public_key) AS public_bytes FROM spool_keys')).rows;
      } finally {
        await admin.end();
      }
    };
    assert.deepEqual(await snapshot(env, await provisionFully(org)), reference);
    const [key, ...more] = await spoolKeys();
    assert.deepEqual(more, []);
    assert.match(key.wrapped_key, /^local:v1:/, 'stored only wrapped by the org key');
    assert.deepEqual([key.kms_key_version, key.public_bytes], [1, 32]);
    await provisionFully(org);
    assert.deepEqual(await spoolKeys(), [key], 'idempotent');
    const app = await connect(env.config.DATABASE_APP_URL, org.databaseName);
    try {
      await assert.rejects(app.query(`UPDATE spool_keys SET public_key = '\\x00'`), /permission denied/);
      await assert.rejects(app.query(`INSERT INTO spool_keys (id, wrapped_key, kms_key_version, public_key) VALUES ('x', 'y', 1, '\\x00')`), /permission denied/);
      await assert.rejects(app.query(`DELETE FROM spool_keys`), /permission denied/);
    } finally {
      await app.end();
    }
  });

  test('migrations refuse a database newer than the code', async () => {
    const { org } = await provisioner.register('newer', 'Newer');
    await provisionFully(org);
    await withClient(withDatabase(env.config.DATABASE_OWNER_URL, org.databaseName), async (c) => {
      await c.query(`INSERT INTO coffer_migrations (version, name) VALUES (999, 'from the future')`);
      await assert.rejects(migrate(c, orgMigrations), (error: unknown) => {
        assert.ok(error instanceof SchemaTooNewError);
        const latest = latestVersion(orgMigrations);
        assert.match(error.message, new RegExp(`schema version 999 .* knows only up to ${latest};`));
        return true;
      });
    });
  });

  test('concurrent migrations of one database apply each version once', async () => {
    const { org } = await provisioner.register('racing', 'Racing');
    await withClient(withDatabase(env.config.DATABASE_OWNER_URL, 'postgres'), (c) => ensureDatabase(c, org.databaseName, env.appRole));
    const clients: Client[] = await Promise.all(
      Array.from({ length: 4 }, () => connect(env.config.DATABASE_OWNER_URL, org.databaseName)),
    );
    try {
      const results = await Promise.all(clients.map((c) => migrate(c, orgMigrations)));
      assert.equal(results.filter((r) => r.from === 0).length, 1, 'exactly one run applied the migrations');
      const { rows } = await clients[0].query('SELECT count(*)::int AS n FROM coffer_migrations');
      assert.equal(rows[0].n, latestVersion(orgMigrations));
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });
});
