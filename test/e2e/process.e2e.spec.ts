import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import request from 'supertest';
import { API_MAIN, REPO_ROOT, startApiProcess, stopProcess } from '../support/api-process';
import { ApiClient } from '../support/client';
import { createTestEnv, TestEnv } from '../support/test-env';

describe('the API as a process (compiled main.js, PostgreSQL, Redis)', () => {
  let env: TestEnv;
  let api: ChildProcess;
  let url: string;
  let output = '';
  let tokenFileMode = 0;

  before(async () => {
    env = await createTestEnv();
    ({ child: api, url } = await startApiProcess(env.config, (chunk) => (output += chunk), { LOG_LEVEL: 'info' }));
    tokenFileMode = statSync(env.config.BOOTSTRAP_TOKEN_FILE).mode & 0o777;
  });

  after(async () => {
    await stopProcess(api);
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
    assert.equal(result.status, 1);
    for (const key of ['DATABASE_APP_URL', 'HTTP_PORT', 'LOG_LEVEL']) assert.match(result.stderr, new RegExp(key));
    assert.doesNotMatch(result.stderr, /hunter2/);
  });

  test('the bootstrap token is written once, mode 0600, and not again on restart', async () => {
    assert.equal(tokenFileMode, 0o600);
    assert.match(output, /bootstrap token created/);
    assert.ok(!existsSync(env.config.BOOTSTRAP_TOKEN_FILE), 'the first test took it');
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
