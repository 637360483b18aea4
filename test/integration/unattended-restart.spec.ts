import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initOpenBao, SECRET_ID_TTL_SECONDS } from '../../apps/cli/src/compose-init';
import { Unsealer } from '../../apps/cli/src/compose-unseal';
import { REPO_ROOT } from '../support/api-process';
import { OpenBaoDouble } from '../support/openbao-double';
import { TestWorld } from '../support/world';

/** Runs the image's entry point with `args` (asynchronously: the double answers from this process). */
async function coffer(args: string[], env: Record<string, string>): Promise<{ status: number | null; output: string }> {
  const child = spawn('sh', [join(REPO_ROOT, 'deploy/docker/coffer'), ...args], { env: { PATH: process.env.PATH!, COFFER_APP_DIR: REPO_ROOT, ...env } });
  let output = '';
  child.stdout.on('data', (c) => (output += c));
  child.stderr.on('data', (c) => (output += c));
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { status, output };
}

async function until(condition: () => Promise<boolean> | boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('reboot rehearsal against the OpenBao double: sealed after restart, unsealed by the unsealer without a human, the API ready again', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-reboot-'));
  const keysFile = join(dir, 'coffer-init', 'openbao-keys.json');
  const secretIdFile = join(dir, 'coffer-approle', 'secret-id');
  const roleId = randomUUID();
  const bao = new OpenBaoDouble({ uninitialized: true });
  const lines: string[] = [];
  let world: TestWorld;
  let stopUnsealer: AbortController | undefined;
  let watching: Promise<void> | undefined;

  const ready = async () => (await world.http().get('/health/ready')).body;
  const healthcheck = () => coffer(['healthcheck'], { TLS_MODE: 'off', HTTP_PORT: new URL(world.url).port });
  const startUnsealer = () => {
    stopUnsealer = new AbortController();
    const unsealer = new Unsealer({ address: bao.address, keysFile, secretIdFile, log: (line) => lines.push(line), upkeepMs: 3_600_000 });
    watching = unsealer.watch(100, stopUnsealer.signal);
  };
  const stopWatching = async () => {
    stopUnsealer?.abort();
    await watching;
  };

  before(async () => {
    await bao.start();
    // `docker compose up`: init sets OpenBao up, then the services start on the AppRole.
    await initOpenBao({ address: bao.address, mount: 'transit', keysFile, secretIdFile, roleId, log: (line) => lines.push(line) });
    world = await TestWorld.start({
      config: { KMS_PROVIDER: 'vault', KMS_VAULT_ADDR: bao.address, KMS_VAULT_MOUNT: 'transit', KMS_VAULT_ROLE_ID: roleId, KMS_VAULT_SECRET_ID_FILE: secretIdFile },
      orgs: ['reboot-org'],
    });
  });
  after(async () => {
    await stopWatching();
    await world?.stop();
    await bao.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('before the reboot: ready with the KMS, the compose healthcheck passes, org requests reach transit with the AppRole', async () => {
    assert.deepEqual(await ready(), { status: 'ok', checks: { postgres: 'ok', redis: 'ok', kms: 'ok' } });
    assert.equal((await healthcheck()).status, 0);
    assert.equal((await world.org('reboot-org').get('keys')).status, 200);
    assert.ok(bao.requests.includes('POST /v1/auth/approle/login'));
    assert.equal(bao.tokenLive(bao.token), false, 'no root token is left to steal');
  });

  test('after an OpenBao restart it is sealed: the API is degraded (200, kms down), the healthcheck fails, uncached org requests answer 503 kms_unavailable', async () => {
    await bao.restart();
    assert.equal(bao.sealed, true);
    const res = await world.http().get('/health/ready');
    assert.equal(res.status, 200, 'PostgreSQL and Redis are up: reads from cached keys go on (ADR 0007)');
    assert.deepEqual(res.body, { status: 'degraded', checks: { postgres: 'ok', redis: 'ok', kms: 'down' } });
    assert.equal((await healthcheck()).status, 1, '`docker compose ps` shows the api unhealthy');
    const keys = await world.org('reboot-org').get('keys');
    assert.equal(keys.status, 503);
    assert.equal(keys.body.error.code, 'kms_unavailable');
  });

  test('the unsealer, restarted by Docker like OpenBao, unseals it without a human: ready again, org reads and writes work', async () => {
    startUnsealer();
    await until(() => !bao.sealed, 'the unsealer to unseal OpenBao');
    await until(async () => (await ready()).status === 'ok', 'the API to be ready');
    assert.equal((await healthcheck()).status, 0);
    const org = world.org('reboot-org');
    assert.equal((await org.get('keys')).status, 200);
    const user = await org.post('users').send({ email: `after-reboot-${randomUUID().slice(0, 8)}@example.org`, displayName: 'After', role: 'member' });
    assert.equal(user.status, 201, user.text);
    assert.ok(lines.includes('openbao was sealed: unsealed with the init key share'));
    const printed = lines.join('\n');
    for (const secret of [bao.unsealKey, readFileSync(secretIdFile, 'utf8')]) assert.equal(printed.includes(secret), false, 'no secret is logged');
  });

  test('down for four days (secret id and tokens expired): unsealed, a new secret id issued, the API logs in again from the file', async () => {
    await stopWatching();
    const before = readFileSync(secretIdFile, 'utf8');
    await bao.restart();
    bao.advanceClock((SECRET_ID_TTL_SECONDS + 24 * 3600) * 1000);
    assert.deepEqual(bao.liveSecretIds(), [], 'every secret id has expired');
    startUnsealer();
    await until(async () => !bao.sealed && bao.liveSecretIds().length === 1, 'unseal and a new secret id');
    assert.notEqual(readFileSync(secretIdFile, 'utf8'), before);
    await until(async () => (await world.org('reboot-org').get('keys')).status === 200, 'org requests to work');
    assert.deepEqual(await ready(), { status: 'ok', checks: { postgres: 'ok', redis: 'ok', kms: 'ok' } });
    assert.deepEqual(bao.liveSecretIds(), [readFileSync(secretIdFile, 'utf8')]);
  });
});

describe('coffer unseal as the image runs it (entry point, OpenBao sys API double)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-unseal-'));
  const bao = new OpenBaoDouble({ uninitialized: true });
  const keysFile = join(dir, 'openbao-keys.json');
  before(async () => {
    await bao.start();
    await initOpenBao({ address: bao.address, mount: 'transit', keysFile, secretIdFile: join(dir, 'secret-id'), roleId: randomUUID(), log: () => undefined });
  });
  after(async () => {
    await bao.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('one pass unseals a sealed server and exits 0, printing no key; `healthcheck openbao` follows the seal', async () => {
    const env = { KMS_VAULT_ADDR: bao.address, COFFER_INIT_OPENBAO_KEYS_FILE: keysFile, KMS_VAULT_SECRET_ID_FILE: join(dir, 'secret-id') };
    await bao.restart();
    assert.equal((await coffer(['healthcheck', 'openbao'], env)).status, 1, 'sealed: unhealthy');
    const result = await coffer(['unseal'], env);
    assert.equal(result.status, 0, result.output);
    assert.match(result.output, /\[unseal\] openbao was sealed: unsealed with the init key share/);
    assert.equal(result.output.includes(bao.unsealKey), false);
    assert.equal(bao.sealed, false);
    assert.equal((await coffer(['healthcheck', 'openbao'], env)).status, 0);
  });

  test('without the keys file (kept off the host) it unseals nothing and says so', async () => {
    await bao.restart();
    const result = await coffer(['unseal'], { KMS_VAULT_ADDR: bao.address, COFFER_INIT_OPENBAO_KEYS_FILE: join(dir, 'absent.json') });
    assert.equal(result.status, 1);
    assert.match(result.output, /is absent \(kept off the host\): unseal it by hand/);
    assert.equal(bao.sealed, true);
  });
});
