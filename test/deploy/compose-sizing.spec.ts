import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '@coffer/config';
import { connectionSizing } from '@coffer/database';
import { interpolate, parseCompose } from './compose-file';

/** What `npm run install:compose` puts in .env that the coffer environment needs to interpolate. */
const DOT_ENV = {
  TLS_MODE: 'acme',
  TLS_DOMAINS: 'kb.example.com',
  COFFER_DB_OWNER_PASSWORD: 'o',
  COFFER_DB_APP_PASSWORD: 'a',
  REDIS_PASSWORD: 'r',
  KMS_VAULT_ROLE_ID: 'role',
  KMS_VAULT_SECRET_ID: 'secret',
  MINIO_BUCKET: 'coffer-packages',
  MINIO_COFFER_ACCESS_KEY: 'access',
  MINIO_COFFER_SECRET_KEY: 'secret',
};

/** The configuration the api and worker containers load (and the owner's services'), as Compose interpolates it. */
function containerConfig(env: Record<string, string> = {}) {
  const compose = parseCompose();
  const load = (section: Record<string, string>, owner: 'refused' | 'required') =>
    loadConfig(Object.fromEntries(Object.entries(section).map(([key, value]) => [key, interpolate(String(value), { ...DOT_ENV, ...env })])), owner);
  return { compose, config: load(compose['x-coffer-env'], 'refused'), ownerConfig: load(compose['x-coffer-owner-env'], 'required') };
}

describe('deploy/compose/compose.yaml: database connections (ADR 0009, docs/database-sizing.md)', () => {
  test('COFFER_PROCESS_COUNT is the number of api and worker containers, and their budgets fit a stock postgres image', () => {
    const { compose, config } = containerConfig();
    const processes = Object.values(compose.services).filter((s) => ['api', 'worker'].includes(s.command?.[0] ?? '')).length;
    assert.equal(config.COFFER_PROCESS_COUNT, processes);
    assert.equal(compose.services.postgres.command, undefined, 'the postgres image runs with its defaults: max_connections 100');
    const sizing = connectionSizing(config, { maxConnections: 100, superuserReserved: 3, reserved: 0 });
    assert.equal(sizing.ok, true, sizing.message);
    // The operator's scale-out setting reaches the check, which then refuses what cannot fit.
    const scaled = containerConfig({ COFFER_PROCESS_COUNT: '6' }).config;
    assert.equal(connectionSizing(scaled, { maxConnections: 100, superuserReserved: 3, reserved: 0 }).ok, false);
  });

  test('the app role connects to PostgreSQL itself, no pooler in between', () => {
    const { compose, config, ownerConfig } = containerConfig();
    for (const url of [config.DATABASE_APP_URL, ownerConfig.DATABASE_OWNER_URL!]) assert.equal(new URL(url).host, 'postgres:5432');
    assert.deepEqual(
      Object.values(compose.services).filter((s) => /pgbouncer|pgpool|odyssey|pgcat/i.test(s.image ?? '')),
      [],
    );
  });
});
