import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { withDatabase } from '@coffer/database';
import { createApi } from '../../apps/api/src/bootstrap';
import { createWorker } from '../../apps/worker/src/bootstrap';
import { API_MAIN, appProcessEnv, PROVISIONER_MAIN, REPO_ROOT, WORKER_MAIN } from '../support/api-process';
import { PG_ADMIN_URL } from '../support/test-env';
import { TestWorld } from '../support/world';

/** A compiled main.js on `env`: its exit code and output, or null if it is still running after `ms`. */
function runMain(main: string, env: NodeJS.ProcessEnv, ms = 30_000): Promise<{ code: number | null; output: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [main], { cwd: REPO_ROOT, env });
    let output = '';
    child.stdout.on('data', (c) => (output += c));
    child.stderr.on('data', (c) => (output += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      done({ code: null, output });
    }, ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      done({ code, output });
    });
  });
}

describe("privilege split (PostgreSQL, Redis; API and worker processes without the owner's credentials)", () => {
  let world: TestWorld;
  before(async () => {
    world = await TestWorld.start({ process: true, config: { ORG_PROVISION_WAIT_MS: '20000' } });
  });
  after(() => world?.stop());

  test("the API process has no owner credentials in its environment, and creates orgs through the provisioner's queue", async () => {
    const environ = readFileSync(`/proc/${world.child.pid}/environ`, 'utf8').split('\0');
    assert.equal(environ.filter((kv) => kv.startsWith('DATABASE_OWNER_URL=') || kv.includes(world.config.DATABASE_OWNER_URL)).length, 0);
    assert.ok(environ.some((kv) => kv.startsWith('DATABASE_APP_URL=')), 'the environ read is the API process');
    const org = await world.createOrg('split');
    assert.equal((await org.get('users')).status, 200);
    assert.equal((await world.api.get('organizations/split/status')).body.organization.status, 'active');
  });

  test("the API, the worker and the provisioner refuse to start with the wrong credentials (exit 78, one message, no secret)", async () => {
    const env = appProcessEnv(world.config);
    const ownerUrl = world.config.DATABASE_OWNER_URL;
    const ownerPassword = decodeURIComponent(new URL(ownerUrl).password);
    const cases: [string, string, NodeJS.ProcessEnv, RegExp][] = [
      ['api', API_MAIN, { ...env, DATABASE_OWNER_URL: ownerUrl }, /DATABASE_OWNER_URL: must not be set for this process/],
      ['worker', WORKER_MAIN, { ...env, DATABASE_OWNER_URL: ownerUrl }, /DATABASE_OWNER_URL: must not be set for this process/],
      ['api', API_MAIN, { ...env, DATABASE_APP_URL: ownerUrl }, /refusing to start: DATABASE_APP_URL's role \S+ has CREATEDB, owns \(or is a member of the owner of\) \S+/],
      ['worker', WORKER_MAIN, { ...env, DATABASE_APP_URL: ownerUrl }, /refusing to start: DATABASE_APP_URL's role \S+ has CREATEDB, owns/],
      ['api', API_MAIN, { ...env, DATABASE_APP_URL: withDatabase(PG_ADMIN_URL, new URL(ownerUrl).pathname.slice(1)) }, /refusing to start: DATABASE_APP_URL's role postgres is a superuser, has CREATEDB, has CREATEROLE/],
      ['provisioner', PROVISIONER_MAIN, env, /DATABASE_OWNER_URL: required by this process/],
    ];
    const results = await Promise.all(cases.map(([, main, caseEnv]) => runMain(main, { ...caseEnv, LOG_LEVEL: 'info' })));
    results.forEach(({ code, output }, i) => {
      const [name, , , expected] = cases[i];
      assert.equal(code, 78, `${name} case ${i}: ${output}`);
      assert.match(output, expected, `${name} case ${i}`);
      assert.ok(!output.includes(ownerPassword), `${name} case ${i} prints no password`);
    });
  });

  test('in process too, createApi and createWorker refuse an app URL that owns tables', async () => {
    const asOwner = { ...world.config, DATABASE_APP_URL: world.config.DATABASE_OWNER_URL };
    await assert.rejects(createApi(asOwner, 1000), /refusing to start: .* owns/);
    await assert.rejects(createWorker(asOwner, 1000), /refusing to start: .* owns/);
  });

  test('a creation that outlasts ORG_PROVISION_WAIT_MS answers 202 with its status URL; repeated once active, it adds the first admin', async () => {
    // Another API on the same installation, waiting 300 ms, and no provisioner for a while.
    await world.stopProvisioner();
    const impatient = await createApi({ ...world.config, ORG_PROVISION_WAIT_MS: 300 });
    try {
      await impatient.listen({ host: '127.0.0.1', port: 0 });
      const url = await impatient.getUrl();
      const post = () =>
        fetch(`${url}/api/v1/organizations`, {
          method: 'POST',
          headers: { authorization: `Bearer ${world.adminToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ slug: 'later', name: 'Later', admin: { email: 'admin@later.example', displayName: 'Admin' } }),
        });
      const status = async () => (await (await fetch(`${url}/api/v1/organizations/later/status`, { headers: { authorization: `Bearer ${world.adminToken}` } })).json()) as { organization: { status: string } };

      const pending = await post();
      assert.equal(pending.status, 202);
      const body = (await pending.json()) as { statusUrl: string; organization: { status: string }; admin?: unknown };
      assert.deepEqual([body.statusUrl, pending.headers.get('location'), body.organization.status, body.admin], ['/api/v1/organizations/later/status', '/api/v1/organizations/later/status', 'provisioning', undefined]);
      assert.equal((await status()).organization.status, 'provisioning', 'queued, not yet registered');

      await world.startProvisioner();
      const deadline = Date.now() + 20_000;
      while ((await status()).organization.status !== 'active') {
        assert.ok(Date.now() < deadline, 'the provisioner activated the org by itself');
        await new Promise((r) => setTimeout(r, 100));
      }
      const completed = await post();
      assert.equal(completed.status, 201);
      const created = (await completed.json()) as { admin: { apiKey: { secret: string } } };
      const users = await fetch(`${url}/api/v1/organizations/later/users`, { headers: { authorization: `Bearer ${created.admin.apiKey.secret}` } });
      assert.equal(users.status, 200);
      const again = await post();
      assert.deepEqual([again.status, ((await again.json()) as { error: { code: string } }).error.code], [409, 'organization_exists']);
    } finally {
      await impatient.close();
    }
  });
});
