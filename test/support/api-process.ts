import { ChildProcess, spawn } from 'node:child_process';
import { get } from 'node:https';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import type { AppConfig } from '@coffer/config';

export const REPO_ROOT = resolve(__dirname, '../../..');
export const API_MAIN = resolve(REPO_ROOT, 'dist/apps/api/src/main.js');
export const WORKER_MAIN = resolve(REPO_ROOT, 'dist/apps/worker/src/main.js');
export const PROVISIONER_MAIN = resolve(REPO_ROOT, 'dist/apps/provisioner/src/main.js');
export const CLI_MAIN = resolve(REPO_ROOT, 'dist/apps/cli/src/main.js');

export async function freePort(): Promise<number> {
  return new Promise((done) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

/**
 * The environment of an API or worker process on `config`: everything but the owner's
 * credentials, which those processes refuse (as in compose and the local start).
 */
export function appProcessEnv(config: AppConfig): NodeJS.ProcessEnv {
  const { DATABASE_OWNER_URL: _owner, ...rest } = config;
  return { ...process.env, DATABASE_OWNER_URL: undefined, ...Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, String(v)])) };
}

/**
 * The compiled API (main.js) as its own process, with `config`; resolves once it answers.
 * `url` is the API (HTTPS unless TLS_MODE=off), `httpUrl` the plain-HTTP port.
 */
export async function startApiProcess(
  config: AppConfig,
  onOutput: (chunk: string) => void = () => undefined,
  extraEnv: Record<string, string> = {},
): Promise<{ child: ChildProcess; url: string; httpUrl: string }> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await launchApiProcess(config, onOutput, extraEnv);
    } catch (error) {
      // A port freePort() found free can be taken (an outgoing connection's ephemeral port)
      // before the child binds it: pick new ones. Ports the caller chose are not retried.
      if (attempt === 3 || extraEnv.HTTP_PORT || !/EADDRINUSE/.test((error as Error).message)) throw error;
    }
  }
}

async function launchApiProcess(
  config: AppConfig,
  onOutput: (chunk: string) => void,
  extraEnv: Record<string, string>,
): Promise<{ child: ChildProcess; url: string; httpUrl: string }> {
  const port = Number(extraEnv.HTTP_PORT ?? (await freePort()));
  const httpsPort = await freePort();
  const child = spawn(process.execPath, [API_MAIN], {
    cwd: REPO_ROOT,
    env: { ...appProcessEnv(config), HTTP_PORT: String(port), HTTPS_PORT: String(httpsPort), ...extraEnv },
  });
  let seen = '';
  const collect = (chunk: Buffer) => {
    seen += chunk;
    onOutput(String(chunk));
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const httpUrl = `http://127.0.0.1:${port}`;
  const url = config.TLS_MODE === 'off' ? httpUrl : `https://127.0.0.1:${httpsPort}`;
  const deadline = Date.now() + 30_000;
  while (!(await answers(`${url}/health/live`))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`api did not start:\n${seen}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, url, httpUrl };
}

/** Whether the URL answers 200. Over HTTPS the chain is not checked here: tests that care do. */
function answers(url: string): Promise<boolean> {
  if (url.startsWith('http:')) return fetch(url).then((r) => r.ok, () => false);
  return new Promise((done) => {
    get(url, { rejectUnauthorized: false }, (res) => {
      res.resume();
      done(res.statusCode === 200);
    }).once('error', () => done(false));
  });
}

export async function stopProcess(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null) return;
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
}

/** The compiled worker (main.js) as its own process; resolves once it logs that it started. */
export async function startWorkerProcess(
  config: AppConfig,
  extraEnv: Record<string, string> = {},
  onOutput: (chunk: string) => void = () => undefined,
): Promise<ChildProcess> {
  const child = spawn(process.execPath, [WORKER_MAIN], {
    cwd: REPO_ROOT,
    env: { ...appProcessEnv(config), LOG_LEVEL: 'info', ...extraEnv },
  });
  let seen = '';
  await new Promise<void>((started, failed) => {
    const timer = setTimeout(() => failed(new Error(`worker did not start:\n${seen}`)), 30_000);
    child.stdout!.on('data', (chunk: Buffer) => onOutput(String(chunk)));
    child.stderr!.on('data', (chunk: Buffer) => onOutput(String(chunk)));
    child.stdout!.on('data', (chunk: Buffer) => {
      seen += chunk;
      if (seen.includes('worker started')) {
        clearTimeout(timer);
        started();
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (seen += chunk));
    child.once('exit', (code) => {
      clearTimeout(timer);
      failed(new Error(`worker exited with ${code}:\n${seen}`));
    });
  });
  return child;
}
