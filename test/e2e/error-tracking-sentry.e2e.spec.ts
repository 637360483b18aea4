import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { appProcessEnv, CLI_MAIN, REPO_ROOT } from '../support/api-process';
import { startSentryReceiver, SentryEvent, SentryReceiver } from '../support/sentry-receiver';
import { connect, connectToOrgAsOwner } from '../support/test-env';
import { TestWorld } from '../support/world';

const VERSION = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).version;
const EMAIL = 'dana.sentry-secret@leak.example';
const MARKER = 'body-marker-9c41e7d2';

/** The compiled CLI on the world's services, without the owner's credentials; resolves when it exits. */
async function runCli(world: TestWorld, env: Record<string, string>, ...args: string[]): Promise<{ code: number | null; err: string }> {
  // Not spawnSync: the receiver answering the CLI's report runs in this process.
  const child = spawn(process.execPath, [CLI_MAIN, ...args], { cwd: REPO_ROOT, env: { ...appProcessEnv(world.config), ...env } });
  let err = '';
  child.stderr.on('data', (c) => (err += c));
  const code = await new Promise<number | null>((done) => child.once('close', done));
  return { code, err };
}

/** Runs `fn` while the app role lacks `privilege` on a control-plane table: queries on it fail, unexpectedly to Coffer. */
async function withoutGrant<T>(world: TestWorld, table: string, fn: () => Promise<T>): Promise<T> {
  const owner = await connect(world.config.DATABASE_OWNER_URL);
  try {
    await owner.query(`REVOKE SELECT ON ${table} FROM "${world.env.appRole}"`);
    return await fn();
  } finally {
    await owner.query(`GRANT SELECT ON ${table} TO "${world.env.appRole}"`);
    await owner.end();
  }
}

describe('error tracking (SENTRY_DSN), checked against a local Sentry envelope receiver, not a real Sentry', () => {
  let receiver: SentryReceiver;
  let world: TestWorld;
  /** Every value that must never leave: tokens, their secrets, an e-mail, a body, the database password. */
  let secrets: string[];

  before(async () => {
    receiver = await startSentryReceiver();
    world = await TestWorld.start({
      // Credentials are read on every request: the failing read below is not served from a cache.
      config: { API_KEY_CACHE_TTL_MS: '0' },
      process: { extraEnv: { SENTRY_DSN: receiver.dsn } },
      orgs: ['acme'],
    });
    const orgToken = world.org('acme').adminToken;
    const appPassword = new URL(world.config.DATABASE_APP_URL).password;
    secrets = [world.adminToken, world.adminToken.split('.').pop()!, orgToken, orgToken.split('.').pop()!, EMAIL, MARKER, appPassword];
  });

  after(async () => {
    await world?.stop();
    await receiver?.close();
  });

  /** No envelope received so far holds a secret, anywhere (headers, items, as sent). */
  function assertNoSecretLeft() {
    assert.ok(receiver.envelopes.length > 0);
    for (const envelope of receiver.envelopes) {
      const sent = `${envelope.url}\n${JSON.stringify(envelope.requestHeaders)}\n${envelope.raw}`;
      for (const secret of secrets) assert.ok(!sent.includes(secret), `an envelope holds a secret (${secret.slice(0, 12)}…): ${envelope.raw}`);
      assert.deepEqual(envelope.items.map((i) => i.header.type), ['event'], 'errors only: no session, transaction, span or client report');
    }
  }

  test('an API 500 is reported with its request id and route template, 4xx answers are not, and no token, e-mail, body or password leaves', async () => {
    const api = world.api;
    const org = world.org('acme');
    // The client's mistakes: 401, 400 (an invalid body carrying the e-mail and the marker), 404.
    const wrongToken = `${world.adminToken.slice(0, -4)}AAAA`;
    secrets.push(wrongToken);
    assert.equal((await api.as(wrongToken).get('organizations')).status, 401);
    assert.equal((await api.post('organizations').send({ slug: 'Not A Slug', name: MARKER, admin: { email: EMAIL } })).status, 400);
    assert.equal((await world.http().get(`/api/v1/nowhere?token=${org.adminToken}`)).status, 404);
    assert.equal((await org.get('users/0000000000000000')).status, 404, 'user_not_found');

    // Unexpected: the app role cannot read the tokens, so authenticating the admin fails.
    const failed = await withoutGrant(world, 'platform_admin_tokens', () =>
      api.post('organizations').send({ slug: 'leak', name: MARKER, admin: { email: EMAIL, displayName: MARKER } }),
    );
    assert.equal(failed.status, 500);
    assert.equal(failed.body.error.code, 'internal_error');
    const requestId = failed.headers['x-request-id'];

    const event = await receiver.waitForEvent((e) => e.tags?.request_id === requestId);
    assert.equal(event.tags!.service, 'api');
    assert.equal(event.tags!.route, '/api/v1/organizations');
    assert.equal(event.tags!.method, 'POST');
    assert.equal(event.transaction, 'POST /api/v1/organizations');
    assert.equal(event.release, `coffer@${VERSION}`);
    assert.equal(event.environment, 'test', 'COFFER_ENV');
    const exception = event.exception!.values.at(-1)!;
    assert.match(exception.value!, /permission denied for table platform_admin_tokens/);
    const frames = exception.stacktrace!.frames!;
    assert.ok(frames.length > 0 && frames.every((f) => f.filename && typeof f.lineno === 'number'), 'stack frames: file and line');
    for (const absent of ['request', 'user', 'extra', 'breadcrumbs', 'server_name']) assert.equal(absent in event, false, absent);

    // A report of a 4xx would have been sent before the 500's: give any a moment more, then none.
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(receiver.events().map((e: SentryEvent) => e.tags?.request_id), [requestId], 'one event, for the 500 only');
    assert.equal(receiver.envelopes[0].project, '1');
    assert.match(receiver.envelopes[0].url, /[?&]sentry_key=public(&|$)/, "the DSN's public key");
    assertNoSecretLeft();
  });

  test('a failed job is reported with its name and id, never its payload', async () => {
    // The sweep for expired keys runs every second and reads acme's api_keys, which it may not.
    const worker = await world.startWorkerProcess({ SENTRY_DSN: receiver.dsn, EXPIRE_API_KEYS_CRON: '* * * * * *' });
    const orgDb = await connectToOrgAsOwner(world.env, world.org('acme').id);
    let event: SentryEvent;
    try {
      await orgDb.query(`REVOKE SELECT ON api_keys FROM "${world.env.appRole}"`);
      event = await receiver.waitForEvent((e) => e.tags?.job === 'find-expired-api-keys', 20_000);
    } finally {
      await orgDb.query(`GRANT SELECT ON api_keys TO "${world.env.appRole}"`);
      await orgDb.end();
      // Its other jobs would fail too while the tests below take grants away.
      const exited = new Promise((r) => worker.once('exit', r));
      worker.kill('SIGTERM');
      await exited;
    }
    assert.equal(event.tags!.service, 'worker');
    assert.equal(event.tags!.job_id, 'find-expired-api-keys');
    assert.match(event.exception!.values.at(-1)!.value!, /permission denied for table api_keys/);
    assertNoSecretLeft();
  });

  test("the CLI reports an unexpected failure before it exits, not a client's error (409)", async () => {
    const env = { SENTRY_DSN: receiver.dsn };
    const exists = await runCli(world, env, 'orgs:create', 'acme', 'Acme', EMAIL, MARKER);
    assert.equal(exists.code, 1, exists.err);
    assert.match(exists.err, /organization_exists/);
    const failed = await withoutGrant(world, 'tls_certificates', () => runCli(world, env, 'certs:list'));
    assert.equal(failed.code, 1, failed.err);
    assert.match(failed.err, /internal_error/);
    // The CLI flushed before exiting: the report is here already.
    const reported = receiver.events().filter((e) => e.tags?.service === 'cli');
    assert.deepEqual(reported.map((e) => e.tags?.command), ['certs:list']);
    assert.match(reported[0].exception!.values.at(-1)!.value!, /permission denied for table tls_certificates/);
    assertNoSecretLeft();
  });

  test('without SENTRY_DSN the same failures send nothing', async () => {
    const before = receiver.envelopes.length;
    const { url } = await world.startApiProcess();
    const failed = await withoutGrant(world, 'platform_admin_tokens', () =>
      fetch(`${url}/api/v1/organizations`, { headers: { authorization: `Bearer ${world.adminToken}` } }),
    );
    assert.equal(failed.status, 500);
    const cli = await withoutGrant(world, 'tls_certificates', () => runCli(world, {}, 'certs:list'));
    assert.equal(cli.code, 1, cli.err);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(receiver.envelopes.length, before);
  });
});
