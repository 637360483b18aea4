import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_KEYS } from '@coffer/config';
import { freePort, REPO_ROOT } from './api-process';
import { deleteRedisKeys, dropDatabasesAndRoles, PG_ADMIN_URL, REDIS_URL } from './test-env';

/** This process's environment without any Coffer setting: what a fresh shell in a checkout has. */
export const plainEnv = () => Object.fromEntries(Object.entries(process.env).filter(([k]) => !CONFIG_KEYS.includes(k as never)));

/** What `npm run up` keeps in `<home>/installation.json`. */
export interface Installation {
  id: string;
  database: string;
  orgDatabasePrefix: string;
  roles: { owner: string; app: string };
  redisKeyPrefix: string;
}

export interface LocalStart {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
  /** Waits for this start's local.json (an earlier start's is removed first by the caller). */
  ready(): Promise<{ local: any; ca: Buffer }>;
  /** SIGINT, then SIGKILL if it has not exited once up's own drain wait (35 s) is over. */
  stop(): Promise<number | null>;
}

/**
 * `npm run up` for the state directory `home`, on the shared PostgreSQL and Redis, with no name
 * overrides, on free ports, with `env` over that; ready within `readyMs`.
 */
export async function startUp(home: string, env: Record<string, string> = {}, readyMs = 90_000): Promise<LocalStart> {
  const [port, httpsPort, metricsPort, workerMetricsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const child = spawn(process.execPath, ['scripts/up.mjs'], {
    cwd: REPO_ROOT,
    env: {
      ...plainEnv(),
      COFFER_SKIP_INSTALL: '1',
      COFFER_HOME: home,
      HTTP_PORT: String(port),
      HTTPS_PORT: String(httpsPort),
      METRICS_PORT: String(metricsPort),
      WORKER_METRICS_PORT: String(workerMetricsPort),
      COFFER_PG_ADMIN_URL: PG_ADMIN_URL,
      REDIS_URL,
      LOG_LEVEL: 'warn',
      ...env,
    },
  });
  let output = '';
  child.stdout!.on('data', (c) => (output += c));
  child.stderr!.on('data', (c) => (output += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    output: () => output,
    exited,
    async ready() {
      const localPath = join(home, 'local.json');
      const deadline = Date.now() + readyMs;
      while (!existsSync(localPath) || JSON.parse(readFileSync(localPath, 'utf8')).apiUrl !== `https://127.0.0.1:${httpsPort}`) {
        assert.ok(running() && Date.now() < deadline, `up did not write local.json:\n${output.slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      const local = JSON.parse(readFileSync(localPath, 'utf8'));
      return { local, ca: readFileSync(local.caCertPath) };
    },
    async stop() {
      if (!running()) return child.exitCode;
      child.kill('SIGINT');
      const code = await Promise.race([exited, new Promise<number>((r) => setTimeout(() => r(-1), 40_000))]);
      if (running()) child.kill('SIGKILL');
      return code;
    },
  };
}

export const readInstallation = (home: string): Installation => JSON.parse(readFileSync(join(home, 'installation.json'), 'utf8'));

/** Drops what an installation made on PostgreSQL (databases, roles) and Redis. */
export async function dropInstallation(installation: Installation | undefined): Promise<void> {
  if (!installation?.id) return;
  await dropDatabasesAndRoles(installation.database, [installation.roles.owner, installation.roles.app]);
  await deleteRedisKeys(installation.redisKeyPrefix);
}
