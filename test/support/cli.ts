import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './api-process';
import type { TestWorld } from './world';

/**
 * The compiled admin CLI (scripts/cli.mjs) against the world's services, as an operator runs it.
 * Not spawnSync: `orgs:create` waits for the world's provisioner, which runs in this process.
 */
export async function runCli(world: TestWorld, ...args: string[]): Promise<{ code: number | null; stdout: string; err: string }> {
  const env = Object.fromEntries(Object.entries(world.config).map(([k, v]) => [k, String(v)]));
  const child = spawn(process.execPath, [join(REPO_ROOT, 'scripts/cli.mjs'), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env, COFFER_HOME: join(REPO_ROOT, '.coffer', 'no-local-start') },
  });
  let [stdout, err] = ['', ''];
  child.stdout.on('data', (c) => (stdout += c));
  child.stderr.on('data', (c) => (err += c));
  const code = await new Promise<number | null>((done) => child.once('close', done));
  return { code, stdout, err };
}
