import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomId } from '@coffer/crypto';
import { freePort, REPO_ROOT } from '../support/api-process';
import { deleteRedisKeys, dropDatabasesAndRoles, PG_ADMIN_URL, REDIS_URL } from '../support/test-env';

test('npm run up starts API and worker, writes local.json, and stops cleanly on SIGINT', async () => {
  const id = randomId(4);
  const home = mkdtempSync(join(tmpdir(), 'coffer-up-'));
  const names = { owner: `coffer_t_owner_${id}`, app: `coffer_t_app_${id}`, db: `coffer_t_${id}` };
  const port = await freePort();
  const up = spawn(process.execPath, ['scripts/up.mjs'], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      COFFER_SKIP_INSTALL: '1',
      COFFER_HOME: home,
      HTTP_PORT: String(port),
      COFFER_DB_OWNER: names.owner,
      COFFER_DB_APP: names.app,
      COFFER_DB_NAME: names.db,
      ORG_DATABASE_PREFIX: `${names.db}_org_`,
      REDIS_KEY_PREFIX: `coffer-t-${id}`,
      COFFER_PG_ADMIN_URL: PG_ADMIN_URL,
      REDIS_URL,
      LOG_LEVEL: 'warn',
    },
  });
  let output = '';
  up.stdout.on('data', (c) => (output += c));
  up.stderr.on('data', (c) => (output += c));
  const localPath = join(home, 'local.json');
  try {
    const deadline = Date.now() + 90_000;
    while (!existsSync(localPath)) {
      assert.ok(up.exitCode === null && Date.now() < deadline, `up did not write local.json:\n${output.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(statSync(localPath).mode & 0o777, 0o600);
    const local = JSON.parse(readFileSync(localPath, 'utf8'));
    assert.equal(local.apiUrl, `http://127.0.0.1:${port}`);
    assert.match(local.adminToken, /^coffer_pat\./);
    assert.match(local.databaseUrls.owner, new RegExp(`^postgres://${names.owner}:`));
    assert.match(local.databaseUrls.app, new RegExp(`^postgres://${names.app}:`));
    assert.equal(local.redisUrl, REDIS_URL);
    assert.ok(!existsSync(join(home, 'bootstrap-token')), 'the token file was moved into local.json');
    assert.ok(!output.includes(local.adminToken), 'the token is never printed');

    assert.equal((await fetch(`${local.apiUrl}/health/ready`)).status, 200);
    const created = await fetch(`${local.apiUrl}/api/v1/organizations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${local.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ slug: `t${id}`, name: 'Local start' }),
    });
    assert.equal(created.status, 201);

    up.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => resolve(-1), 20_000);
      up.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    assert.equal(code, 0, output.slice(-2000));
    const after = await fetch(`${local.apiUrl}/health/live`).then(
      () => 'answering',
      () => 'closed',
    );
    assert.equal(after, 'closed');
  } finally {
    if (up.exitCode === null) up.kill('SIGKILL');
    await dropDatabasesAndRoles(names.db, [names.owner, names.app]);
    await deleteRedisKeys(`coffer-t-${id}`);
    rmSync(home, { recursive: true, force: true });
  }
});
