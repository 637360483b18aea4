import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { Redis } from 'ioredis';
import request from 'supertest';
import { CONFIG_KEYS } from '@coffer/config';
import { randomId } from '@coffer/crypto';
import { API_MAIN, freePort, REPO_ROOT, WORKER_MAIN } from '../support/api-process';
import { deleteRedisKeys, dropDatabasesAndRoles, PG_ADMIN_URL, REDIS_URL } from '../support/test-env';
import { dropInstallation, Installation, plainEnv, readInstallation, startUp } from '../support/local-start';

function cli(home: string, ...args: string[]) {
  return spawnSync(process.execPath, ['scripts/cli.mjs', ...args], { cwd: REPO_ROOT, env: { ...plainEnv(), COFFER_HOME: home }, encoding: 'utf8' });
}

test('npm run up migrates, starts the provisioner, the API (HTTPS, local CA) and the worker (no owner credentials in either), writes local.json, and stops cleanly on SIGINT', async () => {
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
      WORKER_METRICS_PORT: String(await freePort()),
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

    // The owner's credentials are in the provisioner's environment only (Linux: /proc/<pid>/environ).
    const children = spawnSync('ps', ['--ppid', String(up.pid), '-o', 'pid=,args='], { encoding: 'utf8' }).stdout.trim().split('\n');
    const envOf = (app: string) => {
      const line = children.find((l) => l.includes(`dist/apps/${app}/src/main.js`));
      assert.ok(line, `${app} runs under up (${children.join('; ')})`);
      return readFileSync(`/proc/${line.trim().split(/\s+/)[0]}/environ`, 'utf8').split('\0');
    };
    const holdsOwner = (app: string) => envOf(app).some((kv) => kv.startsWith('DATABASE_OWNER_URL=') || kv.includes(local.databaseUrls.owner));
    assert.deepEqual(
      { api: holdsOwner('api'), worker: holdsOwner('worker'), provisioner: holdsOwner('provisioner') },
      { api: false, worker: false, provisioner: true },
    );
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

test('two checkouts (state directories) on one PostgreSQL and Redis each get their own installation: both start, and neither sees nor changes the other', async () => {
  const homes = [mkdtempSync(join(tmpdir(), 'coffer-up-a-')), mkdtempSync(join(tmpdir(), 'coffer-up-b-'))];
  const installations: (Installation | undefined)[] = [];
  const ups: Awaited<ReturnType<typeof startUp>>[] = [];
  const slug = `t${randomId(4)}`;
  try {
    for (const home of homes) {
      const up = await startUp(home);
      ups.push(up);
      const { local, ca } = await up.ready();
      const installation = readInstallation(home);
      installations.push(installation);
      assert.equal(statSync(join(home, 'installation.json')).mode & 0o777, 0o600);
      assert.match(installation.id, /^[0-9a-f]{12}$/);
      assert.equal(local.installationId, installation.id);
      assert.deepEqual(
        [installation.database, installation.orgDatabasePrefix, installation.roles, installation.redisKeyPrefix],
        [`coffer_${installation.id}`, `coffer_${installation.id}_org_`, { owner: `coffer_${installation.id}_owner`, app: `coffer_${installation.id}_app` }, `coffer-${installation.id}`],
      );
      assert.equal(new URL(local.databaseUrls.app).pathname, `/${installation.database}`);
      assert.equal(local.serviceEnv.REDIS_KEY_PREFIX, installation.redisKeyPrefix);
      // The same slug in each: each has its own registry, in its own database.
      const created = await request(local.apiUrl).post('/api/v1/organizations').ca(ca).set('authorization', `Bearer ${local.adminToken}`).send({ slug, name: 'Local start' });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.doesNotMatch(up.output(), /does not unwrap|refuses to start|failed to start/);
    }
    const [a, b] = installations as Installation[];
    assert.notEqual(a.id, b.id);

    const admin = new Client({ connectionString: PG_ADMIN_URL });
    await admin.connect();
    try {
      for (const installation of [a, b]) {
        const { rows } = await admin.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE $1 || '%' ORDER BY datname", [installation.database]);
        assert.equal(rows.length, 2, `${installation.database}: the control plane and the org`);
        assert.ok(rows.some((r) => r.datname.startsWith(installation.orgDatabasePrefix)));
      }
    } finally {
      await admin.end();
    }
    // Each worker's queues live under its own prefix.
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    try {
      for (const installation of [a, b]) {
        const deadline = Date.now() + 20_000;
        while ((await redis.keys(`${installation.redisKeyPrefix}:*`)).length === 0) {
          assert.ok(Date.now() < deadline, `keys under ${installation.redisKeyPrefix}`);
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    } finally {
      redis.disconnect();
    }

    // The first still works with its own roles' passwords (the second did not reset them) and its own keys.
    for (const home of homes) {
      const verified = cli(home, 'audit:verify', slug);
      assert.equal(verified.status, 0, verified.stderr);
      assert.equal(JSON.parse(verified.stdout).valid, true);
    }
    for (const up of ups.splice(0)) assert.equal(await up.stop(), 0, up.output().slice(-2000));

    // Started again, the first keeps its installation and reads its data.
    rmSync(join(homes[0], 'local.json'));
    const again = await startUp(homes[0]);
    ups.push(again);
    await again.ready();
    assert.equal(readInstallation(homes[0]).id, a.id);
    const verified = cli(homes[0], 'audit:verify', slug);
    assert.equal(verified.status, 0, verified.stderr);
    assert.equal(await again.stop(), 0, again.output().slice(-2000));
  } finally {
    for (const up of ups) await up.stop();
    for (const installation of installations) await dropInstallation(installation);
    for (const home of homes) rmSync(home, { recursive: true, force: true });
  }
});

test('a start whose master key does not open the stored keys says so in one line, with what to do, and exits non-zero: no stack trace', async () => {
  const home = mkdtempSync(join(tmpdir(), 'coffer-up-key-'));
  let installation: Installation | undefined;
  let up: Awaited<ReturnType<typeof startUp>> | undefined;
  try {
    up = await startUp(home);
    const { local, ca } = await up.ready();
    installation = readInstallation(home);
    const created = await request(local.apiUrl).post('/api/v1/organizations').ca(ca).set('authorization', `Bearer ${local.adminToken}`).send({ slug: `t${randomId(4)}`, name: 'Key' });
    assert.equal(created.status, 201);
    assert.equal(await up.stop(), 0, up.output().slice(-2000));

    // The master key is replaced (lost, or another checkout's): the stored keys no longer open.
    const keyFile = join(home, 'kms-master.key');
    writeFileSync(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
    rmSync(join(home, 'local.json'));
    up = await startUp(home);
    const code = await Promise.race([up.exited, new Promise((r) => setTimeout(() => r('still running'), 60_000))]);
    const output = up.output();
    assert.notEqual(code, 0, output);
    assert.notEqual(code, 'still running', output);
    const lines = output.split('\n').filter(Boolean);
    const refusal = lines.filter((l) => /refuses to start/.test(l));
    assert.equal(refusal.length, 1, output);
    // `coffer migrate` runs first and refuses as the services do.
    assert.match(refusal[0], /^migrate refuses to start: the local KMS key \S+ \(version \d+\) stored in this database does not unwrap under the configured master key/);
    assert.ok(refusal[0].includes(`database ${installation.database}`) && refusal[0].includes(`KMS_LOCAL_MASTER_KEY_FILE=${keyFile}`), refusal[0]);
    assert.match(refusal[0], /Start it with the master key this database was created with/);
    assert.ok(!lines.some((l) => /^\s+at /.test(l) || /Error: /.test(l)), `no stack trace:\n${output}`);
    assert.ok(!existsSync(join(home, 'local.json')), 'nothing claims to be running');

    // The worker, started on its own against that database with that key, refuses the same way.
    // As up starts them: without the owner's credentials.
    const { DATABASE_OWNER_URL: _owner, ...serviceEnv } = local.serviceEnv as Record<string, string>;
    const worker = spawnSync(process.execPath, [WORKER_MAIN], { env: { ...plainEnv(), ...serviceEnv, KMS_LOCAL_MASTER_KEY_FILE: keyFile }, encoding: 'utf8', timeout: 60_000 });
    assert.equal(worker.status, 78, worker.stderr);
    assert.match(worker.stderr, /^worker refuses to start: the local KMS key .* does not unwrap under the configured master key: .*\n$/);
    assert.equal(worker.stderr.split('\n').filter(Boolean).length, 1, worker.stderr);
    // And so does the API itself (up passes its exit code on).
    const api = spawnSync(process.execPath, [API_MAIN], { env: { ...plainEnv(), ...serviceEnv, KMS_LOCAL_MASTER_KEY_FILE: keyFile, HTTP_PORT: String(await freePort()), HTTPS_PORT: String(await freePort()), METRICS_PORT: String(await freePort()) }, encoding: 'utf8', timeout: 60_000 });
    assert.equal(api.status, 78, api.stderr);
    assert.equal(code, 78);
  } finally {
    await up?.stop();
    await dropInstallation(installation);
    rmSync(home, { recursive: true, force: true });
  }
});
