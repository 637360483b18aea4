import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './api-process';
import type { TestWorld } from './world';

/** The compiled admin CLI (scripts/cli.mjs) against the world's services, as an operator runs it. */
export function runCli(world: TestWorld, ...args: string[]) {
  const env = Object.fromEntries(Object.entries(world.config).map(([k, v]) => [k, String(v)]));
  const result = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/cli.mjs'), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env, COFFER_HOME: join(REPO_ROOT, '.coffer', 'no-local-start') },
    encoding: 'utf8',
  });
  return { code: result.status, stdout: result.stdout, err: result.stderr };
}
