// `npm run bench`: installs, builds, makes sure PostgreSQL and Redis answer, then runs every
// benchmark in bench/ (each prints its figures and its ratio against a baseline of the same run).
// `npm run bench -- <name>` runs only the benchmarks whose name contains <name>.
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureRuntime } from './runtime.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const log = (line) => console.error(`[bench] ${line}`);
await ensureRuntime({ root, log });

const { ensureDependencies, ensurePostgres, ensureRedis } = await import('./services.mjs');
await ensureDependencies({ root, log });
const { build } = await import('./build.mjs');
log(`built ${await build()} files`);

const home = join(root, '.coffer', 'test-services');
const pg = await ensurePostgres({ adminUrl: process.env.COFFER_TEST_PG_ADMIN_URL, home, log });
const redis = await ensureRedis({ url: process.env.COFFER_TEST_REDIS_URL, home, log });
const result = spawnSync(process.execPath, ['--enable-source-maps', join(root, 'dist/bench/main.js'), ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, COFFER_TEST_PG_ADMIN_URL: pg.adminUrl, COFFER_TEST_REDIS_URL: redis.url },
});
await redis.stop();
await pg.stop();
process.exit(result.status ?? 1);
