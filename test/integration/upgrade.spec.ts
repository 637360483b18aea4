import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { INestApplicationContext } from '@nestjs/common';
import { SchemaService } from '@coffer/database';
import { createApi } from '../../apps/api/src/bootstrap';
import { createWorker } from '../../apps/worker/src/bootstrap';
import { connect, createTestEnv, TestEnv } from '../support/test-env';

/**
 * What `docker compose up` relies on at an install or an upgrade (deploy/compose/README.md): the
 * worker starts before or beside the API and must wait for its migrations; an older image
 * started against a newer database must stop, not serve.
 */
describe('upgrade: coffer migrate migrates, the worker and the API wait, a downgrade is refused (PostgreSQL, Redis)', () => {
  let env: TestEnv;
  let worker: INestApplicationContext | undefined;
  before(async () => {
    env = await createTestEnv();
  });
  after(async () => {
    await worker?.close();
    await env.destroy();
  });

  test('a worker started before the migrations waits for them, then starts', async () => {
    let started = false;
    const starting = createWorker(env.config, 60_000).then((app) => {
      started = true;
      worker = app;
    });
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.equal(started, false, 'no schema yet: still waiting');
    await new SchemaService(env.config).migrateControlPlane();
    await starting;
    assert.equal(started, true);
  });

  test('an API older than its database refuses to start, naming both versions', async () => {
    const owner = await connect(env.config.DATABASE_OWNER_URL);
    try {
      await owner.query(`INSERT INTO coffer_migrations (version, name) VALUES (999, 'from the future')`);
      await assert.rejects(createApi(env.config), /is at schema version 999 but this Coffer knows only up to \d+; refusing/);
    } finally {
      await owner.query('DELETE FROM coffer_migrations WHERE version = 999');
      await owner.end();
    }
  });
});
