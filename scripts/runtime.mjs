// Coffer runs on Node 24 LTS. Where the machine's Node is older, each entry script (test, up,
// bench, cli) re-runs itself under a Node 24 installed from the npm registry's `node` package
// into .coffer/runtime, with that Node first on PATH so that npm and every child process use it.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';

export const NODE_PACKAGE = 'node@24.21.0';
const MAJOR = 24;

const majorOf = (version) => Number(version.replace(/^v/, '').split('.')[0]);

/** Returns when this process already runs on Node ≥ 24; otherwise runs it again on Node 24 and exits with its status. */
export async function ensureRuntime({ root, log }) {
  if (majorOf(process.versions.node) >= MAJOR) return;
  const prefix = join(root, '.coffer', 'runtime');
  const node = join(prefix, 'node_modules', 'node', 'bin', 'node');
  const installed = existsSync(node) && spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout?.trim();
  if (!installed || majorOf(installed) < MAJOR) {
    log(`Node ${process.versions.node} is older than ${MAJOR}; installing ${NODE_PACKAGE} from the npm registry into .coffer/runtime`);
    const args = ['install', '--prefix', prefix, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', NODE_PACKAGE];
    const result = spawnSync('npm', args, { stdio: 'inherit' });
    if (result.status !== 0 || !existsSync(node)) throw new Error(`installing ${NODE_PACKAGE} failed (npm exit code ${result.status})`);
  }
  const child = spawn(node, process.argv.slice(1), {
    stdio: 'inherit',
    env: { ...process.env, PATH: `${dirname(node)}:${process.env.PATH ?? ''}` },
  });
  // The terminal's Ctrl-C reaches both processes; a signal sent to this one alone is passed on.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  const code = await new Promise((resolve) => child.on('exit', (status, signal) => resolve(status ?? 128 + (constants.signals[signal] ?? 0))));
  process.exit(code);
}
