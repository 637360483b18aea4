import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { AppConfig, loadConfig } from '@coffer/config';
import { randomId } from '@coffer/crypto';
import { ensureRoles, withClient } from '@coffer/database';
import { startApiProcess, stopProcess } from '../support/api-process';
import { installCoffer } from '../support/installation';
import { startPrivatePostgres, PrivatePostgres } from '../support/private-postgres';
import { deleteRedisKeys, REDIS_URL } from '../support/test-env';

const ORGS = Number(process.env.DENSITY_ORGS ?? 300);
const CLIENTS = 32;
const SECONDS = Number(process.env.DENSITY_SECONDS ?? 25);
/** Orgs created at once: CREATE DATABASE and migrations are I/O and CPU on a 2-core machine. */
const PROVISIONING_CONCURRENCY = 4;

/** Polls pg_stat_activity as the superuser until stopped: the most app-role connections seen. */
function sampleConnections(adminUrl: string, appRole: string) {
  const seen = { maxApp: 0, maxAll: 0, samples: 0 };
  let running = true;
  const done = (async () => {
    const admin = new Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      while (running) {
        const { rows } = await admin.query<{ app: number; all: number }>(
          // The API process's app-role connections (its pools name themselves coffer-api); the
          // provisioner, in this process, has budgeted pools of its own (coffer-app).
          `SELECT count(*) FILTER (WHERE usename = $1 AND application_name = 'coffer-api')::int AS app,
                  count(*) FILTER (WHERE backend_type = 'client backend')::int AS all
           FROM pg_stat_activity`,
          [appRole],
        );
        seen.maxApp = Math.max(seen.maxApp, rows[0].app);
        seen.maxAll = Math.max(seen.maxAll, rows[0].all);
        seen.samples++;
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await admin.end();
    }
  })();
  return {
    seen,
    async stop() {
      running = false;
      await done;
      return seen;
    },
  };
}

/** `work(i)` for i in 0..count-1, at most `concurrency` at once. */
async function inParallel(count: number, concurrency: number, work: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) await work(next++);
  }));
}

describe(`tenant density on a private PostgreSQL with max_connections=100: ${ORGS} orgs, ${CLIENTS} clients, the app role within its connection budget`, () => {
  let pg: PrivatePostgres;
  let config: AppConfig;
  let dir: string;
  let api: { child: ChildProcess; url: string } | undefined;
  let installation: Awaited<ReturnType<typeof installCoffer>> | undefined;
  let sampler: ReturnType<typeof sampleConnections>;
  const orgs: { slug: string; token: string }[] = [];
  const appRole = `coffer_app_${randomId(4)}`;

  before(async () => {
    // Durability off: the test is about connection counts, and 300 CREATE DATABASEs with fsync
    // would take most of the time allowed on this machine.
    pg = await startPrivatePostgres({ max_connections: 100, fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' });
    const ownerRole = `coffer_owner_${randomId(4)}`;
    await withClient(pg.adminUrl, (admin) => ensureRoles(admin, { owner: { name: ownerRole }, app: { name: appRole } }));
    const roleUrl = (role: string) => `postgres://${role}@127.0.0.1:${pg.port}/coffer`;
    dir = mkdtempSync(join(tmpdir(), 'coffer-density-'));
    config = loadConfig({
      COFFER_ENV: 'test',
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      TLS_MODE: 'off',
      HTTP_PORT: '0',
      METRICS_PORT: '0',
      DATABASE_OWNER_URL: roleUrl(ownerRole),
      DATABASE_APP_URL: roleUrl(appRole),
      REDIS_URL,
      REDIS_KEY_PREFIX: `coffer-density-${randomId(4)}`,
      BOOTSTRAP_TOKEN_FILE: join(dir, 'bootstrap-token'),
      KMS_LOCAL_MASTER_KEY: randomBytes(32).toString('base64'),
      STORAGE_DIR: join(dir, 'storage'),
    });
    installation = await installCoffer(config);
    sampler = sampleConnections(pg.adminUrl, appRole);
    api = await startApiProcess(config);
    const admin = `Bearer ${readFileSync(config.BOOTSTRAP_TOKEN_FILE, 'utf8').trim()}`;
    // The product's provisioning, as an operator creates orgs: POST /organizations (the
    // provisioner creates, migrates and grants the database; the API the first admin and key).
    await inParallel(ORGS, PROVISIONING_CONCURRENCY, async (i) => {
      const slug = `density-${i}`;
      const res = await fetch(`${api!.url}/api/v1/organizations`, {
        method: 'POST',
        headers: { authorization: admin, 'content-type': 'application/json' },
        body: JSON.stringify({ slug, name: `Density ${i}`, admin: { email: `admin@${slug}.example`, displayName: 'Admin' } }),
      });
      const body = (await res.json()) as { admin: { apiKey: { secret: string } } };
      if (res.status !== 201) throw new Error(`creating ${slug}: ${res.status} ${JSON.stringify(body)}`);
      orgs[i] = { slug, token: body.admin.apiKey.secret };
    });
  }, { timeout: 8 * 60_000 });

  after(async () => {
    await sampler?.stop().catch(() => undefined);
    await stopProcess(api?.child);
    await installation?.close();
    await pg?.stop();
    if (config) await deleteRedisKeys(config.REDIS_KEY_PREFIX);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** CLIENTS loops of authenticated GETs over orgs[0..spread), round robin, for `seconds` and at least one round. */
  async function load(spread: number, seconds: number) {
    const statuses = new Map<number, number>();
    let next = 0;
    const end = Date.now() + seconds * 1000;
    const started = Date.now();
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        while (Date.now() < end || next < spread) {
          const n = next++;
          const org = orgs[n % spread];
          const path = n % 2 ? `/api/v1/organizations/${org.slug}/users` : `/api/v1/organizations/${org.slug}`;
          const res = await fetch(`${api!.url}${path}`, { headers: { authorization: `Bearer ${org.token}` } });
          await res.arrayBuffer();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        }
      }),
    );
    const total = [...statuses.values()].reduce((a, b) => a + b, 0);
    return { statuses, total, perSecond: total / ((Date.now() - started) / 1000) };
  }

  test(`${CLIENTS} clients over all orgs for ${SECONDS} s against the API process: no 5xx, and pg_stat_activity never shows more than the budget`, { timeout: 5 * 60_000 }, async (t) => {
    assert.equal(orgs.filter(Boolean).length, ORGS);
    // Round robin over every org: with more orgs than connections, nearly every request finds its
    // org without one and the least recently used idle connection is closed for it.
    const all = await load(ORGS, SECONDS);
    // For comparison (no assertion): the same clients over 3 orgs, whose full shares (3 x 5) fit
    // the budget's 17 org connections, so their connections stay open.
    const warm = await load(3, 10);
    const seen = await sampler.stop();
    t.diagnostic(
      `over ${ORGS} orgs: ${all.total} requests (${all.perSecond.toFixed(0)}/s), statuses ${JSON.stringify(Object.fromEntries(all.statuses))}; ` +
        `over 3 orgs (connections kept): ${warm.total} requests (${warm.perSecond.toFixed(0)}/s), statuses ${JSON.stringify(Object.fromEntries(warm.statuses))}; ` +
        `pg_stat_activity: at most ${seen.maxApp} app-role connections (budget ${config.DATABASE_CONNECTION_BUDGET}), ` +
        `${seen.maxAll} client backends in all, over ${seen.samples} samples from the first org's creation on`,
    );
    assert.deepEqual([...all.statuses.keys()], [200], 'every request answered 200: no 5xx (database_busy included), no 4xx');
    assert.deepEqual([...warm.statuses.keys()], [200]);
    assert.ok(all.total >= ORGS, 'every org was asked at least once');
    assert.ok(seen.samples >= 100 && seen.maxApp > 0, 'pg_stat_activity was sampled throughout');
    assert.ok(seen.maxApp <= config.DATABASE_CONNECTION_BUDGET, `${seen.maxApp} app-role connections > budget`);
  });
});
