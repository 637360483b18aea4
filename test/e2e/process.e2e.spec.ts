import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import request from 'supertest';
import { API_MAIN, CLI_MAIN, REPO_ROOT, startApiProcess, stopProcess } from '../support/api-process';
import { installCoffer } from '../support/installation';
import { ApiClient } from '../support/client';
import { createTestEnv, TestEnv } from '../support/test-env';
import { TestWorld } from '../support/world';

describe('the API as a process (compiled main.js, PostgreSQL, Redis)', () => {
  let env: TestEnv;
  let installation: Awaited<ReturnType<typeof installCoffer>> | undefined;
  let api: ChildProcess;
  let url: string;
  let output = '';
  let tokenFileMode = 0;

  before(async () => {
    env = await createTestEnv();
    installation = await installCoffer(env.config);
    ({ child: api, url } = await startApiProcess(env.config, (chunk) => (output += chunk), { LOG_LEVEL: 'info' }));
    tokenFileMode = statSync(env.config.BOOTSTRAP_TOKEN_FILE).mode & 0o777;
  });

  after(async () => {
    await stopProcess(api);
    await installation?.close();
    await env?.destroy();
  });

  test('logs one JSON access line per request, with request id and route, and no token, key or email', async () => {
    const adminToken = env.takeBootstrapToken();
    const platform = new ApiClient(url, '/api/v1', adminToken);
    const created = await platform
      .post('organizations')
      .send({ slug: 'logs', name: 'Logs', admin: { email: 'secret.person@logs.example', displayName: 'Secret Person' } });
    assert.equal(created.status, 201);
    const orgKey: string = created.body.admin.apiKey.secret;
    const org = platform.org('logs').as(orgKey);
    const users = await org.get('users');
    assert.equal(users.status, 200);
    const bad = await org.post('users').send({
      email: 'other.secret@logs.example',
      displayName: 'x',
      role: 'nope',
    });
    assert.equal(bad.status, 400);
    await org.as(`${orgKey.slice(0, -4)}AAAA`).get();
    await new Promise((r) => setTimeout(r, 200));

    const lines = output.split('\n').filter(Boolean);
    for (const line of lines.filter((l) => l.startsWith('{'))) JSON.parse(line);
    const access = lines.filter((l) => l.includes('"msg":"request"')).map((l) => JSON.parse(l));
    const usersLine = access.find((l) => l.requestId === users.headers['x-request-id']);
    assert.ok(usersLine, 'the request id links the response to its log line');
    assert.equal(usersLine.route, '/api/v1/organizations/:org/users');
    assert.equal(usersLine.status, 200);
    assert.equal(usersLine.org, 'logs');
    assert.match(usersLine.actor, /^user:[0-9a-f]{16}\/key:[0-9a-f]{16}$/);
    assert.equal(usersLine.ip, '127.0.0.1');
    assert.equal(typeof usersLine.durationMs, 'number');
    for (const secret of [adminToken, orgKey, orgKey.split('.').pop()!, 'secret.person', 'other.secret', 'Secret Person']) {
      assert.ok(!output.includes(secret), `the log contains a secret or personal value (${secret.slice(0, 12)}…)`);
    }
  });

  test('a bad configuration stops the process and lists every problem without secret values', () => {
    const result = spawnSync(process.execPath, [API_MAIN], {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env.PATH,
        DATABASE_OWNER_URL: 'postgres://owner:hunter2-owner@127.0.0.1/x',
        DATABASE_APP_URL: 'mysql://app:hunter2-app@127.0.0.1/x',
        HTTP_PORT: 'eighty',
        LOG_LEVEL: 'loud',
      },
      encoding: 'utf8',
    });
    assert.equal(result.status, 78);
    for (const key of ['DATABASE_OWNER_URL', 'DATABASE_APP_URL', 'HTTP_PORT', 'LOG_LEVEL']) assert.match(result.stderr, new RegExp(`${key}:`));
    assert.doesNotMatch(result.stderr, /hunter2/);
  });

  test('the bootstrap token is written once, by the first coffer migrate, mode 0600; not by another migrate or an API restart', async () => {
    assert.equal(tokenFileMode, 0o600);
    assert.equal(installation!.migration.bootstrapTokenFile, env.config.BOOTSTRAP_TOKEN_FILE);
    assert.ok(!existsSync(env.config.BOOTSTRAP_TOKEN_FILE), 'the first test took it');
    const serviceEnv = Object.fromEntries(Object.entries(env.config).map(([k, v]) => [k, String(v)]));
    const again = spawnSync(process.execPath, [CLI_MAIN, 'migrate'], { cwd: REPO_ROOT, env: { ...process.env, ...serviceEnv }, encoding: 'utf8' });
    assert.equal(again.status, 0, again.stderr);
    assert.deepEqual(Object.keys(JSON.parse(again.stdout)), ['controlPlane', 'organizations']);
    let restartOutput = '';
    const restarted = await startApiProcess(env.config, (chunk) => (restartOutput += chunk), { LOG_LEVEL: 'info' });
    try {
      assert.ok(!existsSync(env.config.BOOTSTRAP_TOKEN_FILE), 'a restart does not mint another token');
      assert.doesNotMatch(restartOutput, /bootstrap token created/);
      assert.equal((await request(restarted.url).get('/health/ready')).status, 200);
    } finally {
      await stopProcess(restarted.child);
    }
  });
});

describe('requests in flight: a principal checked again at commit; SIGTERM drains for SHUTDOWN_GRACE_MS (PostgreSQL, Redis)', () => {
  let world: TestWorld;
  before(async () => {
    world = await TestWorld.start({ orgs: ['drain'], config: { SHUTDOWN_GRACE_MS: '2000', LOG_LEVEL: 'info' } });
  });
  after(() => world?.stop());

  /** A PUT upload of `size` bytes whose body is written when `finish` is called (or never). */
  function startUpload(url: string, headers: Record<string, string>, size: number) {
    let answered: (value: { status: number } | { error: string }) => void = () => undefined;
    const result = new Promise<{ status: number } | { error: string }>((resolve) => (answered = resolve));
    const req = httpRequest(url, { method: 'PUT', headers: { ...headers, 'content-type': 'application/octet-stream', 'content-length': String(size) } }, (res) => {
      res.resume();
      res.on('end', () => answered({ status: res.statusCode ?? 0 }));
    });
    req.on('error', (error) => answered({ error: (error as NodeJS.ErrnoException).code ?? error.message }));
    req.write(Buffer.alloc(size / 2, 1));
    return { result, finish: () => req.end(Buffer.alloc(size / 2, 2)) };
  }

  test('an upload whose user is disabled while its body streams commits nothing: 401 at commit, no version', async () => {
    const org = world.org('drain');
    const member = await world.addUser(org, 'member');
    const upload = startUpload(`${world.url}/api/v1/organizations/drain/packages/late`, { authorization: `Bearer ${member.token}` }, 64 * 1024);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await org.post(`users/${member.userId}/disable`)).status, 200);
    upload.finish();
    assert.deepEqual(await upload.result, { status: 401 });
    assert.equal((await org.get('packages/late')).status, 404, 'no version, not even a package');
    const [entry] = (await org.get('audit-logs?outcome=failure&limit=1')).body.entries;
    assert.deepEqual([entry.actor.userId, entry.body.error], [member.userId, { code: 'unauthenticated', status: 401 }]);
  });

  test('an upload that finishes within the grace period is stored; one that stalls is cut when it ends; both moments are logged', async (t) => {
    let output = '';
    const { child, url } = await startApiProcess(world.config, (chunk) => (output += chunk), { LOG_LEVEL: 'info', SHUTDOWN_GRACE_MS: '2000' });
    t.after(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'));
    const org = world.org('drain');
    const target = (name: string) => `${url}/api/v1/organizations/drain/packages/${name}`;
    const finishing = startUpload(target('finishing'), org.headers(), 64 * 1024);
    const stalling = startUpload(target('stalling'), org.headers(), 64 * 1024);
    await new Promise((r) => setTimeout(r, 300)); // both bodies half sent, the handlers waiting for the rest
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
    const signalled = Date.now();
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    finishing.finish();
    assert.deepEqual(await finishing.result, { status: 201 }, output);
    const cut = await stalling.result;
    assert.ok('error' in cut || cut.status >= 400, `the stalled upload does not succeed: ${JSON.stringify(cut)}`);
    await exited;
    const took = Date.now() - signalled;
    assert.ok(took >= 2000 && took < 15_000, `exited ${took} ms after SIGTERM, after the grace period`);
    assert.match(output, /shutting down: new requests get 503, requests in flight finish/);
    // Cut by the server at the end of the grace period (no answer: the connection closed), it says so.
    if ('error' in cut) assert.match(output, /shutdown grace period over: closing the connections still open/);

    const versions = async (name: string) => (await org.get(`packages/${name}`)).body;
    assert.equal((await versions('finishing')).versions?.length, 1, 'the finished upload is stored');
    assert.equal((await org.get('packages/stalling')).status, 404, 'nothing of the stalled one is visible');
  });
});
