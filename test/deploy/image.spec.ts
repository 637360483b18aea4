import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { migrateInstallation } from '../../apps/cli/src/migrate';
import { freePort, REPO_ROOT, startApiProcess, stopProcess } from '../support/api-process';
import { createTestEnv, TestEnv } from '../support/test-env';

const ENTRYPOINT = join(REPO_ROOT, 'deploy/docker/coffer');

/** Runs the image's entry point against this checkout's build, as the image runs it from /app. */
function coffer(args: string[], env: Record<string, string> = {}) {
  return spawnSync('sh', [ENTRYPOINT, ...args], { encoding: 'utf8', env: { ...process.env, COFFER_APP_DIR: REPO_ROOT, ...env } });
}

describe('the container image (Dockerfile)', () => {
  const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
  const stages = dockerfile.split(/^FROM /m).slice(1);
  const copies = (stage: string) => [...stage.matchAll(/^COPY (?:--from=(\S+) )?(.+) (\S+)$/gm)].map((m) => ({ from: m[1], sources: m[2].split(' '), target: m[3] }));

  test('is built on Node 24 LTS (node:24.21.0-bookworm-slim, an exact tag) in two stages and runs as a non-root user with openssl installed', () => {
    assert.deepEqual(stages.map((s) => s.split(/\s/)[0]), ['node:24.21.0-bookworm-slim', 'node:24.21.0-bookworm-slim']);
    const runtime = stages[1];
    assert.match(runtime, /apt-get install[^\n]*\bopenssl\b/);
    assert.match(runtime, /^USER node$/m);
    assert.match(runtime, /^ENTRYPOINT \["\/usr\/bin\/tini", "--", "\/usr\/local\/bin\/coffer"\]$/m);
    assert.match(runtime, /^CMD \["api"\]$/m);
  });

  test('installs exactly the committed lock file (npm ci), never npm install', () => {
    assert.match(stages[0], /^RUN npm ci --no-audit --no-fund$/m);
    assert.doesNotMatch(dockerfile, /npm install/);
  });

  test('its build context holds everything the build copies, and .dockerignore keeps secrets and state out', () => {
    const ignored = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
    for (const { from, sources } of stages.flatMap(copies)) {
      if (from) continue;
      for (const source of sources) {
        assert.ok(existsSync(join(REPO_ROOT, source)), `${source} exists`);
        assert.ok(!ignored.some((pattern) => source === pattern || source.startsWith(`${pattern}/`)), `${source} is not ignored`);
      }
    }
    for (const pattern of ['**/node_modules', '.coffer', '**/.env', '.git']) assert.ok(ignored.includes(pattern), pattern);
  });

  test('the runtime stage copies the build of every process the entry point starts', () => {
    const runtime = copies(stages[1]);
    const fromBuild = runtime.filter((c) => c.from === 'build').flatMap((c) => c.sources.map((s) => s.replace(/^\/src\//, '')));
    assert.deepEqual(fromBuild.sort(), ['dist/apps', 'dist/libs', 'node_modules', 'package.json']);
    assert.ok(runtime.some((c) => c.sources.includes('deploy/docker/coffer') && c.target === '/usr/local/bin/coffer'));
    const started = [...readFileSync(ENTRYPOINT, 'utf8').matchAll(/(dist\/apps\/\S+\.js)/g)].map((m) => m[1]);
    assert.deepEqual([...new Set(started)].sort(), [
      'dist/apps/api/src/main.js',
      'dist/apps/cli/src/compose-init.js',
      'dist/apps/cli/src/compose-unseal.js',
      'dist/apps/cli/src/main.js',
      'dist/apps/provisioner/src/main.js',
      'dist/apps/worker/src/main.js',
    ]);
    for (const path of started) assert.ok(existsSync(join(REPO_ROOT, path)), `${path} is built`);
  });

  test('the entry point passes any other command to the admin CLI', () => {
    // An unknown command is a usage error of the CLI (no command at all prints its help, exit 0).
    const result = coffer(['no-such-command']);
    assert.equal(result.status, 64, result.stderr);
    assert.match(result.stderr, /usage: coffer <command>/);
    assert.match(result.stderr, /orgs:create/);
  });

  describe('the entry point against a running API (PostgreSQL, Redis)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'coffer-healthcheck-'));
    let env: TestEnv;
    let api: ChildProcess | undefined;
    let httpsPort = '';
    before(async () => {
      env = await createTestEnv({ TLS_MODE: 'internal-ca', TLS_DIR: join(dir, 'tls') });
      await migrateInstallation(env.config);
      const started = await startApiProcess(env.config);
      api = started.child;
      httpsPort = new URL(started.url).port;
    });
    after(async () => {
      await stopProcess(api);
      await env.destroy();
      rmSync(dir, { recursive: true, force: true });
    });

    test('coffer health runs the CLI with the services\' environment and answers JSON on stdout', () => {
      const serviceEnv = Object.fromEntries(Object.entries(env.config).map(([k, v]) => [k, String(v)]));
      const result = coffer(['health'], serviceEnv);
      assert.equal(result.status, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout).postgres, 'ok');
    });

    test('is healthy when the API answers ready over HTTPS (internal CA), unhealthy when nothing listens', async () => {
      assert.equal(coffer(['healthcheck'], { TLS_MODE: 'internal-ca', HTTPS_PORT: httpsPort }).status, 0);
      assert.equal(coffer(['healthcheck'], { TLS_MODE: 'internal-ca', HTTPS_PORT: String(await freePort()) }).status, 1);
    });
  });
});
