import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { appendToChain } from '@coffer/audit';
import { SchemaService } from '@coffer/database';
import { testProvisioner, TestProvisioner } from '../support/provisioner';
import { connect, createTestEnv, TestEnv } from '../support/test-env';

describe('database roles: the app role cannot rewrite the audit trail (PostgreSQL)', () => {
  let env: TestEnv;
  let orgDatabase: string;
  let app: Client;
  let provisioning: TestProvisioner;

  before(async () => {
    env = await createTestEnv();
    await new SchemaService(env.config).migrateControlPlane();
    provisioning = testProvisioner(env);
    const { provisioner } = provisioning;
    const { org } = await provisioner.register('roles', 'Roles');
    await provisioner.provision(org);
    orgDatabase = org.databaseName;
    app = await connect(env.config.DATABASE_APP_URL, orgDatabase);
    await app.query('BEGIN');
    await appendToChain(app, org.id, [
      { id: randomUUID(), occurredAt: new Date(), action: 'test.seeded', outcome: 'success', actor: { id: 'test' }, target: null, requestId: null, clientIp: null, userAgent: null, body: {} },
    ]);
    await app.query('COMMIT');
  });

  after(async () => {
    await provisioning?.close();
    await app?.end();
    await env?.destroy();
  });

  const rejected = async (sql: string, pattern: RegExp) => {
    await assert.rejects(app.query(sql), pattern, `expected the app role to be refused: ${sql}`);
  };

  test('rejects UPDATE, DELETE and TRUNCATE on audit_log from the app role', async () => {
    await rejected(`UPDATE audit_log SET action = 'forged'`, /permission denied/);
    await rejected('DELETE FROM audit_log', /permission denied/);
    await rejected('TRUNCATE audit_log', /permission denied/);
  });

  test('rejects disabling or dropping the triggers and replica mode from the app role', async () => {
    await rejected('ALTER TABLE audit_log DISABLE TRIGGER ALL', /must be owner/);
    await rejected('ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete', /must be owner/);
    await rejected('DROP TRIGGER audit_log_no_update_delete ON audit_log', /must be owner/);
    await rejected('DROP TABLE audit_log', /must be owner/);
    await rejected('SET session_replication_role = replica', /permission denied/);
  });

  test('the app role may append to and read audit_log, nothing more', async () => {
    const { rows } = await app.query<{ privilege: string; granted: boolean }>(
      `SELECT p AS privilege, has_table_privilege(current_user, 'audit_log', p) AS granted
       FROM unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE','REFERENCES','TRIGGER']) p`,
    );
    const granted = rows.filter((r) => r.granted).map((r) => r.privilege).sort();
    assert.deepEqual(granted, ['INSERT', 'SELECT']);
    const count = await app.query('SELECT count(*)::int AS n FROM audit_log');
    assert.ok(count.rows[0].n >= 1);
  });

  test('the app role reads the wrapped field keys and may swap their wrapping (rewrap), but cannot add, repurpose or delete one', async () => {
    const { rows } = await app.query<{ purpose: string; wrapped: string }>('SELECT purpose, wrapped FROM field_keys ORDER BY id');
    assert.deepEqual(rows.map((r) => r.purpose), ['field', 'index']);
    assert.ok(rows.every((r) => /^local:v1:/.test(r.wrapped)), 'stored wrapped only');
    await rejected(`UPDATE field_keys SET purpose = 'index' WHERE purpose = 'field'`, /permission denied/);
    await rejected(`UPDATE field_keys SET id = 7`, /permission denied/);
    await app.query('UPDATE field_keys SET wrapped = wrapped, kms_key_version = kms_key_version');
    await rejected('DELETE FROM field_keys', /permission denied/);
    await rejected(`INSERT INTO field_keys (id, purpose, wrapped, kms_key_version) VALUES (9, 'field', 'x', 1)`, /permission denied/);
  });

  test('the database places every insert in the chain itself: the app role cannot choose seq or hashes', async () => {
    const head = (await app.query<{ hash: Buffer }>('SELECT hash FROM audit_log WHERE seq = 1')).rows[0].hash;
    const { rows } = await app.query<{ seq: string; prev_hash: Buffer; hash: Buffer }>(
      `INSERT INTO audit_log (seq, id, occurred_at, action, outcome, actor, body, prev_hash, hash, canonical)
       VALUES (999, gen_random_uuid(), now(), 'forged', 'success', '{}', '{}', '\\x00', '\\x00', 'chosen text')
       RETURNING seq, prev_hash, hash`,
    );
    assert.equal(rows[0].seq, '2');
    assert.ok(rows[0].prev_hash.equals(head));
    const expected = createHash('sha256').update(head).update('2\nchosen text').digest();
    assert.ok(rows[0].hash.equals(expected));
    await rejected(
      `INSERT INTO audit_log (id, occurred_at, action, outcome, actor, body, prev_hash) VALUES (gen_random_uuid(), now(), 'x', 'success', '{}', '{}', '\\x00')`,
      /without its canonical text/,
    );
  });

  test('the app role has no DDL: it cannot create tables or functions', async () => {
    await rejected('CREATE TABLE evil (id int)', /permission denied/);
    await rejected(`CREATE FUNCTION evil() RETURNS int LANGUAGE sql AS 'SELECT 1'`, /permission denied/);
  });

  test('even the owner cannot UPDATE, DELETE or TRUNCATE audit_log while the triggers stand', async () => {
    const owner = await connect(env.config.DATABASE_OWNER_URL, orgDatabase);
    try {
      await assert.rejects(owner.query(`UPDATE audit_log SET action = 'forged'`), /append-only: UPDATE rejected/);
      await assert.rejects(owner.query('DELETE FROM audit_log'), /append-only: DELETE rejected/);
      await assert.rejects(owner.query('TRUNCATE audit_log'), /append-only: TRUNCATE rejected/);
    } finally {
      await owner.end();
    }
  });

  test('the app role owns nothing in any Coffer database, and is not a superuser', async () => {
    const admin = await connect(env.adminUrl);
    try {
      const role = await admin.query('SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = $1', [
        env.appRole,
      ]);
      assert.deepEqual(role.rows[0], { rolsuper: false, rolcreatedb: false, rolcreaterole: false, rolbypassrls: false });
      const dbs = await admin.query<{ datname: string; owner: string }>(
        `SELECT datname, pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname LIKE $1 || '%'`,
        [env.databasePrefix],
      );
      assert.equal(dbs.rows.length, 2, 'the control plane and one org database');
      for (const db of dbs.rows) {
        assert.equal(db.owner, env.ownerRole);
        const client = await connect(env.adminUrl, db.datname);
        try {
          const owned = await client.query(
            `SELECT 'relation ' || relname AS what FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = $1)
             UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE proowner = (SELECT oid FROM pg_roles WHERE rolname = $1)
             UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspowner = (SELECT oid FROM pg_roles WHERE rolname = $1)`,
            [env.appRole],
          );
          assert.deepEqual(owned.rows, [], `app role owns objects in ${db.datname}`);
          const ownerTables = await client.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public' AND tableowner = $1`, [
            env.ownerRole,
          ]);
          assert.ok(ownerTables.rows[0].n >= 3, `owner role owns the tables of ${db.datname}`);
        } finally {
          await client.end();
        }
      }
    } finally {
      await admin.end();
    }
  });
});
