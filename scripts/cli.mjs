// `npm run cli -- <command> [args]`: the admin CLI (dist/apps/cli). Against the local start it
// takes its service settings from .coffer/local.json (written by `npm run up`, mode 0600);
// variables already set in the environment win, as in a container.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureRuntime } from './runtime.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
await ensureRuntime({ root, log: (line) => console.error(`[coffer] ${line}`) });
const main = join(root, 'dist/apps/cli/src/main.js');
if (!existsSync(main)) {
  console.error('coffer: not built yet; run `npm run build` (or `npm run up`) first');
  process.exit(1);
}
const localPath = join(resolve(process.env.COFFER_HOME ?? join(root, '.coffer')), 'local.json');
const local = existsSync(localPath) ? JSON.parse(readFileSync(localPath, 'utf8')).serviceEnv ?? {} : {};
const result = spawnSync(process.execPath, [main, ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
  env: { ...local, ...process.env },
});
process.exit(result.status ?? 1);
