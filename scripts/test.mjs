// `npm test`: installs what the tests need, type-checks, builds, makes sure PostgreSQL and Redis
// answer (starting private ones under .coffer/test-services if not), then runs every unit,
// integration and e2e test with node's test runner. `npm test -- <filter>` runs only the
// compiled test files whose path contains <filter>.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureRuntime } from './runtime.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const log = (line) => console.error(`[test] ${line}`);
await ensureRuntime({ root, log });
const filter = process.argv[2];

const { ensureDependencies, ensurePebble, ensurePostgres, ensureRedis } = await import('./services.mjs');
await ensureDependencies({ root, log });

log(`Node ${process.version}`);
log('type-checking');
run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json', '--noEmit']);
log('checking the library layers (.dependency-cruiser.cjs)');
run(process.execPath, [join(root, 'node_modules/dependency-cruiser/bin/dependency-cruiser.mjs'), '--config', '.dependency-cruiser.cjs', '--output-type', 'err', 'apps', 'libs']);
const { build } = await import('./build.mjs');
log(`built ${await build()} files`);

const home = join(root, '.coffer', 'test-services');
const pg = await ensurePostgres({ adminUrl: process.env.COFFER_TEST_PG_ADMIN_URL, home, log });
const redis = await ensureRedis({ url: process.env.COFFER_TEST_REDIS_URL, home, log });
ensurePebble({ log });

const files = walk(join(root, 'dist'))
  .filter((f) => f.endsWith('.spec.js'))
  .filter((f) => !filter || f.includes(filter))
  .sort();
if (files.length === 0) {
  // node --test with no file runs every test it finds: a filter that matches nothing is a mistake.
  log(`no compiled test file matches '${filter}'`);
  process.exit(1);
}
log(`running ${files.length} test files`);
const status = run(
  process.execPath,
  ['--enable-source-maps', '--test', '--test-concurrency=2', '--test-timeout=300000', '--test-reporter=spec', ...files],
  { COFFER_TEST_PG_ADMIN_URL: pg.adminUrl, COFFER_TEST_REDIS_URL: redis.url },
  false,
);
await redis.stop();
await pg.stop();
process.exit(status);

function run(command, args, env = {}, exitOnFailure = true) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  const code = result.status ?? 1;
  if (code !== 0 && exitOnFailure) process.exit(code);
  return code;
}

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}
