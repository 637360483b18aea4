import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Client, PoolClient } from 'pg';
import { AppConfig } from '@coffer/config';
import { DatabaseBusyError, DatabaseService, quoteIdent, UnitOfWork } from '@coffer/database';
import { migrateInstallation } from '../../apps/cli/src/migrate';
import { startApiProcess, startWorkerProcess } from '../support/api-process';
import { TestWorld } from '../support/world';
import { connect, createTestEnv, TestEnv } from '../support/test-env';

/** The app role's connections PostgreSQL sees, in all and per database, read as the superuser. */
async function activity(admin: Client, role: string): Promise<{ total: number; byDatabase: Map<string, number> }> {
  const { rows } = await admin.query<{ datname: string; n: number }>(
    'SELECT datname, count(*)::int AS n FROM pg_stat_activity WHERE usename = $1 GROUP BY datname',
    [role],
  );
  return { total: rows.reduce((s, r) => s + r.n, 0), byDatabase: new Map(rows.map((r) => [r.datname, r.n])) };
}

async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('connection budget: pools of many org databases within one budget (PostgreSQL)', () => {
  let env: TestEnv;
  let admin: Client;
  const databases: string[] = [];
  // 6 connections: 1 for the control plane, 5 for orgs, at most 2 per org.
  const budget = { DATABASE_CONNECTION_BUDGET: 6, DATABASE_CONTROL_CONNECTIONS: 1, DATABASE_ORG_CONNECTION_SHARE: 2 };
  const open: DatabaseService[] = [];
  /** A DatabaseService of its own per test; the previous tests' are closed first, so that
   * what PostgreSQL shows is this one's alone. */
  const service = async (overrides: Partial<AppConfig> = {}) => {
    await Promise.all(open.splice(0).map((db) => db.onApplicationShutdown()));
    await until(async () => (await activity(admin, env.appRole)).total === 0, 'earlier connections to close');
    const db = new DatabaseService({ ...env.config, ...budget, ...overrides });
    open.push(db);
    return db;
  };

  before(async () => {
    env = await createTestEnv();
    admin = await connect(env.adminUrl);
    for (let i = 0; i < 8; i++) {
      const name = `${env.databasePrefix}_db${i}`;
      await admin.query(`CREATE DATABASE ${quoteIdent(name)}`);
      await admin.query(`GRANT CONNECT ON DATABASE ${quoteIdent(name)} TO ${quoteIdent(env.appRole)}`);
      databases.push(name);
    }
  });

  after(async () => {
    await Promise.all(open.map((db) => db.onApplicationShutdown()));
    await admin?.end();
    await env?.destroy();
  });

  test('many concurrent queries over 8 databases never hold more connections than the budget, and all complete', async () => {
    // Idle connections outlive the wait by far: only reclaiming them for waiters serves everyone.
    const db = await service({ DATABASE_ACQUIRE_TIMEOUT_MS: 5000, DATABASE_IDLE_TIMEOUT_MS: 60_000 });
    let sampling = true;
    let seen = 0;
    const sampler = (async () => {
      while (sampling) seen = Math.max(seen, (await activity(admin, env.appRole)).total);
    })();
    let peak = 0;
    const results = await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        const { rows } = await db.org(databases[i % databases.length]).query('SELECT pg_sleep(0.02), current_database() AS name');
        peak = Math.max(peak, db.connections.orgs);
        return rows[0].name;
      }),
    );
    sampling = false;
    await sampler;
    assert.deepEqual(results, Array.from({ length: 60 }, (_, i) => databases[i % databases.length]));
    assert.equal(peak, 5, 'the org part of the budget was used in full');
    assert.ok(seen <= 6 && seen > 0, `PostgreSQL saw ${seen} app-role connections`);
  });

  test('an org at its share waits for its own connections while another org is served; beyond the wait, database_busy', async () => {
    const db = await service({ DATABASE_ACQUIRE_TIMEOUT_MS: 300 });
    const [noisy, quiet] = databases;
    const held: PoolClient[] = [await db.org(noisy).connect(), await db.org(noisy).connect()];
    assert.equal((await db.org(quiet).query('SELECT 1 AS one')).rows[0].one, 1, 'another org is not held back');
    await assert.rejects(db.org(noisy).query('SELECT 1'), (error: unknown) => error instanceof DatabaseBusyError && error.status === 503);
    assert.equal((await activity(admin, env.appRole)).byDatabase.get(noisy), 2, 'no third connection to the noisy org');
    held[0].release();
    assert.equal((await db.org(noisy).query('SELECT 2 AS two')).rows[0].two, 2, 'its share frees up for it');
    held[1].release();
  });

  test('the least recently used idle pool is closed to make room; a handle kept across that still works', async () => {
    const db = await service({ DATABASE_ACQUIRE_TIMEOUT_MS: 5000 });
    const kept = db.org(databases[0]);
    for (const name of databases.slice(0, 5)) await db.org(name).query('SELECT 1');
    await db.org(databases[0]).query('SELECT 1'); // the oldest is now databases[1]
    assert.equal(db.connections.orgs, 5);
    await db.org(databases[5]).query('SELECT 1');
    await until(async () => !(await activity(admin, env.appRole)).byDatabase.get(databases[1]), `${databases[1]} closed`);
    const seen = await activity(admin, env.appRole);
    assert.equal(seen.byDatabase.get(databases[0]), 1, 'recently used: kept');
    assert.equal(seen.byDatabase.get(databases[5]), 1);
    // Evict databases[0] too, then use the handle taken before.
    await db.org(databases[6]).query('SELECT 1');
    await db.org(databases[7]).query('SELECT 1');
    assert.equal((await kept.query('SELECT current_database() AS name')).rows[0].name, databases[0]);
    assert.ok(db.connections.orgs <= 5);
  });

  test('an idle connection of a pool that has one in use is closed for a waiter; the one in use is not', async () => {
    const db = await service({ DATABASE_CONNECTION_BUDGET: 4, DATABASE_ACQUIRE_TIMEOUT_MS: 2000, DATABASE_IDLE_TIMEOUT_MS: 60_000 });
    const [first, second] = databases;
    const inUse = await db.org(first).connect();
    const pid = (await inUse.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    await db.org(first).query('SELECT 1'); // a second connection to `first`, idle afterwards
    const busy = await db.org(second).connect();
    assert.equal(db.connections.orgs, 3, 'the budget is full: one in use and one idle on first, one in use on second');
    assert.equal((await db.org(second).query('SELECT 1 AS one')).rows[0].one, 1);
    assert.equal((await inUse.query('SELECT pg_backend_pid() AS pid')).rows[0].pid, pid);
    inUse.release();
    busy.release();
  });

  test('a pool a unit of work is using is never closed for room; others wait, then database_busy', async () => {
    const db = await service({ DATABASE_ACQUIRE_TIMEOUT_MS: 300 });
    const unit = new UnitOfWork();
    const pid = await unit.run(async () => (await db.org(databases[0]).query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
    const busy = await Promise.all(databases.slice(1, 5).map((name) => db.org(name).connect()));
    await assert.rejects(db.org(databases[5]).query('SELECT 1'), DatabaseBusyError, 'every slot is in use, none idle');
    const after = await unit.run(async () => (await db.org(databases[0]).query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
    assert.equal(after, pid, "the unit's transaction kept its connection");
    await unit.commit();
    for (const client of busy) client.release();
    assert.equal((await db.org(databases[5]).query('SELECT 1 AS one')).rows[0].one, 1);
  });

  test('idle connections close after DATABASE_IDLE_TIMEOUT_MS', async () => {
    const db = await service({ DATABASE_IDLE_TIMEOUT_MS: 200 });
    const pid = (await db.org(databases[2]).query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    await until(async () => (await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount === 0, 'the idle connection to close');
    await until(async () => db.connections.orgs === 0, 'its slot to return to the budget');
  });
});

describe('connection budget through the API: 503 database_busy with Retry-After, never a 500 (PostgreSQL, Redis)', () => {
  let world: TestWorld;

  before(async () => {
    // A wait long enough for the API's own start on a busy machine (its control-plane queries).
    world = await TestWorld.start({ config: { DATABASE_CONNECTION_BUDGET: '6', DATABASE_ORG_CONNECTION_SHARE: '2', DATABASE_ACQUIRE_TIMEOUT_MS: '3000' } });
  });

  after(() => world?.stop());

  test("an org whose share is in use answers 503 database_busy after the wait; another org's request succeeds", async () => {
    const [busy, other] = [await world.createOrg(), await world.createOrg()];
    const db = world.app.get(DatabaseService);
    const held = [0, 1].map(() => db.org(`${world.config.ORG_DATABASE_PREFIX}${busy.id}`).connect());
    const clients = await Promise.all(held);
    try {
      const refused = await busy.get();
      assert.equal(refused.status, 503);
      assert.equal(refused.body.error.code, 'database_busy');
      assert.equal(refused.headers['retry-after'], '1');
      const served = await other.get();
      assert.equal(served.status, 200);
    } finally {
      for (const client of clients) client.release();
    }
    const again = await busy.get();
    assert.equal(again.status, 200);
  });
});

describe('the sizing check at start: API and worker processes refuse budgets that could exceed max_connections (PostgreSQL)', () => {
  let env: TestEnv;

  before(async () => {
    // Ten processes of 20 connections cannot fit any server with max_connections below 225.
    env = await createTestEnv({ COFFER_PROCESS_COUNT: '10' });
  });

  after(async () => {
    await env?.destroy();
  });

  test('each exits at start with one log line naming the settings and the server limits', async () => {
    const { rows } = await connect(env.adminUrl).then(async (c) => {
      try {
        return await c.query<{ setting: string }>("SELECT setting FROM pg_settings WHERE name = 'max_connections'");
      } finally {
        await c.end();
      }
    });
    assert.ok(Number(rows[0].setting) < 225, 'this server is too small for the deployment the test declares');
    const refusal = (output: string) => {
      const lines = output.split('\n').filter((l) => /refusing to start/.test(l));
      assert.equal(lines.length, 1, output);
      assert.match(lines[0], /^refusing to start: .*COFFER_PROCESS_COUNT=10 x \(DATABASE_CONNECTION_BUDGET=20 \+ 2 owner\).* > max_connections \d+ - superuser_reserved_connections \d+/);
    };
    await migrateInstallation(env.config);
    await assert.rejects(startApiProcess(env.config), (error: Error) => {
      refusal(error.message);
      return true;
    });
    await assert.rejects(startWorkerProcess(env.config), (error: Error) => {
      assert.match(error.message, /worker exited with 78/);
      refusal(error.message);
      return true;
    });
  });
});
