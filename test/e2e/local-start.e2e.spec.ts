import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { CONFIG_KEYS } from '@coffer/config';
import { randomId } from '@coffer/crypto';
import { freePort, REPO_ROOT } from '../support/api-process';
import { deleteRedisKeys, dropDatabasesAndRoles, PG_ADMIN_URL, REDIS_URL } from '../support/test-env';

test('npm run up starts API (HTTPS, local CA) and worker, writes local.json, and stops cleanly on SIGINT', async () => {
  const id = randomId(4);
  const home = mkdtempSync(join(tmpdir(), 'coffer-up-'));
  const names = { owner: `coffer_t_owner_${id}`, app: `coffer_t_app_${id}`, db: `coffer_t_${id}` };
  const port = await freePort();
  const httpsPort = await freePort();
  const metricsPort = await freePort();
  const up = spawn(process.execPath, ['scripts/up.mjs'], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      COFFER_SKIP_INSTALL: '1',
      COFFER_HOME: home,
      HTTP_PORT: String(port),
      HTTPS_PORT: String(httpsPort),
      METRICS_PORT: String(metricsPort),
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
    assert.equal(local.apiUrl, `https://127.0.0.1:${httpsPort}`);
    assert.equal(local.caCertPath, join(home, 'tls', 'ca.crt'));
    const ca = readFileSync(local.caCertPath);
    assert.match(local.adminToken, /^coffer_pat\./);
    assert.match(local.databaseUrls.owner, new RegExp(`^postgres://${names.owner}:`));
    assert.match(local.databaseUrls.app, new RegExp(`^postgres://${names.app}:`));
    assert.equal(local.redisUrl, REDIS_URL);
    assert.ok(!existsSync(join(home, 'bootstrap-token')), 'the token file was moved into local.json');
    assert.ok(!output.includes(local.adminToken), 'the token is never printed');

    // The certificate verifies against the reported CA alone.
    const ready = await request(local.apiUrl).get('/health/ready').ca(ca);
    assert.equal(ready.status, 200);
    assert.match(ready.headers['strict-transport-security'], /max-age=31536000/);
    const created = await request(local.apiUrl)
      .post('/api/v1/organizations')
      .ca(ca)
      .set('authorization', `Bearer ${local.adminToken}`)
      .send({ slug: `t${id}`, name: 'Local start' });
    assert.equal(created.status, 201);
    const plain = await fetch(`http://127.0.0.1:${port}/health/ready`, { redirect: 'manual' });
    assert.deepEqual([plain.status, plain.headers.get('location')], [308, `https://127.0.0.1:${httpsPort}/health/ready`]);
    assert.equal(local.metricsUrl, `http://127.0.0.1:${metricsPort}/metrics`);
    assert.match(await (await fetch(local.metricsUrl)).text(), /^coffer_kms_up 1$/m);

    // The admin CLI finds this installation through local.json alone.
    const cliEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !CONFIG_KEYS.includes(k as never)));
    const cli = spawnSync(process.execPath, ['scripts/cli.mjs', 'audit:verify', `t${id}`], {
      cwd: REPO_ROOT,
      env: { ...cliEnv, COFFER_HOME: home },
      encoding: 'utf8',
    });
    assert.equal(cli.status, 0, cli.stderr);
    assert.equal(JSON.parse(cli.stdout).valid, true);

    up.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => resolve(-1), 20_000);
      up.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    assert.equal(code, 0, output.slice(-2000));
    const after = await request(local.apiUrl).get('/health/live').ca(ca).then(
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
