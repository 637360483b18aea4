import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { Redis } from 'ioredis';
import { AppConfig, loadConfig } from '@coffer/config';
import { randomId } from '@coffer/crypto';
import { ensureRoles, quoteIdent, withClient, withDatabase } from '@coffer/database';

/** The machine's superuser connection and Redis, or the private ones `npm test` started. */
export const PG_ADMIN_URL = process.env.COFFER_TEST_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.COFFER_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A whole installation's settings, the owner's credentials included (tests play every process). */
export type TestConfig = AppConfig & { DATABASE_OWNER_URL: string };

export interface TestEnv {
  config: TestConfig;
  ownerRole: string;
  appRole: string;
  /** Every database of this env (control plane and orgs) starts with this. */
  databasePrefix: string;
  adminUrl: string;
  /** Reads (and removes) the bootstrap token the API wrote at first start. */
  takeBootstrapToken(): string;
  destroy(): Promise<void>;
}

/**
 * A Coffer installation of its own: owner and app roles, a control-plane database name, an
 * org-database prefix, a Redis key prefix and a temp dir, all unique, all removed by destroy().
 */
export async function createTestEnv(overrides: Partial<Record<keyof AppConfig, string>> = {}): Promise<TestEnv> {
  const id = randomId(4);
  const databasePrefix = `coffer_test_${id}`;
  const ownerRole = `coffer_test_owner_${id}`;
  const appRole = `coffer_test_app_${id}`;
  const passwords = { owner: randomId(), app: randomId() };
  await withClient(PG_ADMIN_URL, (admin) =>
    ensureRoles(admin, { owner: { name: ownerRole, password: passwords.owner }, app: { name: appRole, password: passwords.app } }),
  );
  const dir = mkdtempSync(join(tmpdir(), 'coffer-test-'));
  const roleUrl = (role: string, password: string) => {
    const url = new URL(withDatabase(PG_ADMIN_URL, databasePrefix));
    url.username = role;
    url.password = password;
    return url.toString();
  };
  const config = loadConfig({
    COFFER_ENV: 'test',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    HTTP_PORT: '0',
    METRICS_PORT: '0',
    // Plain HTTP unless a test is about transport (test/e2e/tls.e2e.spec.ts).
    TLS_MODE: 'off',
    DATABASE_OWNER_URL: roleUrl(ownerRole, passwords.owner),
    DATABASE_APP_URL: roleUrl(appRole, passwords.app),
    ORG_DATABASE_PREFIX: `${databasePrefix}_org_`,
    REDIS_URL,
    REDIS_KEY_PREFIX: `coffer-test-${id}`,
    BOOTSTRAP_TOKEN_FILE: join(dir, 'bootstrap-token'),
    KMS_LOCAL_MASTER_KEY: randomBytes(32).toString('base64'),
    STORAGE_DIR: join(dir, 'storage'),
    OUTBOUND_ALLOWED_HOSTS: '127.0.0.1,::1,localhost', // the test servers (s3rver, webhook receivers, pebble) are on loopback
    ...overrides,
  }) as TestConfig;
  return {
    config,
    ownerRole,
    appRole,
    databasePrefix,
    adminUrl: PG_ADMIN_URL,
    takeBootstrapToken() {
      const token = readFileSync(config.BOOTSTRAP_TOKEN_FILE, 'utf8').trim();
      rmSync(config.BOOTSTRAP_TOKEN_FILE);
      return token;
    },
    async destroy() {
      await dropDatabasesAndRoles(databasePrefix, [ownerRole, appRole]);
      await deleteRedisKeys(config.REDIS_KEY_PREFIX);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function dropDatabasesAndRoles(databasePrefix: string, roles: string[]): Promise<void> {
  await withClient(PG_ADMIN_URL, async (admin) => {
    const { rows } = await admin.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE datname LIKE $1 || '%'",
      [databasePrefix],
    );
    for (const { datname } of rows) await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(datname)} WITH (FORCE)`);
    for (const role of roles) await admin.query(`DROP ROLE IF EXISTS ${quoteIdent(role)}`);
  });
}

export async function deleteRedisKeys(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (keys.length) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  redis.disconnect();
}

/** A connection to one of the env's databases as a given role URL. */
export async function connect(url: string, database?: string): Promise<Client> {
  const client = new Client({ connectionString: database ? withDatabase(url, database) : url });
  await client.connect();
  return client;
}

/** The owner role's connection to an org's database: for tests that play the database owner. */
export async function connectToOrgAsOwner(env: TestEnv, orgId: string): Promise<Client> {
  const control = await connect(env.config.DATABASE_OWNER_URL);
  try {
    const { rows } = await control.query('SELECT database_name FROM organizations WHERE id = $1', [orgId]);
    return await connect(env.config.DATABASE_OWNER_URL, rows[0].database_name);
  } finally {
    await control.end();
  }
}
