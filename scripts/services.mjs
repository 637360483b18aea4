// Installs and starts what Coffer's local start and tests need, on a fresh machine: npm
// dependencies, and PostgreSQL and Redis (the configured ones if they answer, otherwise private
// ones with data under the given home). Imports nothing from node_modules at load time.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';

const isRoot = process.getuid?.() === 0;

export async function ensureDependencies({ root, log }) {
  const marker = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs) return;
  log('installing npm dependencies (npm ci)');
  const result = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`npm ci failed with exit code ${result.status}`);
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer().once('error', reject).listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function canQuery(url) {
  const { Client } = await import('pg');
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function aptInstall(pkg, log) {
  if (!isRoot) throw new Error(`${pkg} is not installed and we are not root; install it and retry`);
  log(`installing ${pkg} with apt-get`);
  spawnSync('apt-get', ['update'], { stdio: 'inherit' });
  const result = spawnSync('apt-get', ['install', '-y', pkg], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (result.status !== 0) throw new Error(`apt-get install ${pkg} failed`);
}

function postgresBin() {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base) ? readdirSync(base).filter((v) => existsSync(join(base, v, 'bin', 'initdb'))) : [];
  return versions.length ? join(base, versions.sort((a, b) => Number(b) - Number(a))[0], 'bin') : undefined;
}

/** initdb and pg_ctl refuse to run as root: run them as the postgres user then. */
function asPostgres(command, args, log) {
  const [cmd, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
  const result = spawnSync(cmd, argv, { encoding: 'utf8' });
  if (result.status !== 0) log(`${command} ${args[0]}: ${(result.stderr || result.stdout || '').trim()}`);
  return result.status === 0;
}

export async function ensurePostgres({ adminUrl = 'postgres://postgres@127.0.0.1:5432/postgres', home, log }) {
  if (await canQuery(adminUrl)) return { adminUrl, started: false, stop: async () => undefined };
  log(`PostgreSQL does not answer at the configured address; starting a private one under ${home}`);
  let bin = postgresBin();
  if (!bin) {
    aptInstall('postgresql', log);
    bin = postgresBin();
  }
  const data = join(home, 'postgres');
  mkdirSync(data, { recursive: true, mode: 0o700 });
  if (isRoot) spawnSync('chown', ['-R', 'postgres:postgres', home]);
  if (!existsSync(join(data, 'PG_VERSION'))) {
    if (!asPostgres(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8'], log)) {
      throw new Error('initdb failed');
    }
  }
  const port = await freePort();
  const options = `-p ${port} -c listen_addresses=127.0.0.1 -k ${data}`;
  const start = () => asPostgres(join(bin, 'pg_ctl'), ['start', '-w', '-D', data, '-l', join(home, 'postgres.log'), '-o', options], log);
  if (!start()) {
    rmSync(join(data, 'postmaster.pid'), { force: true }); // left by a killed earlier run
    if (!start()) throw new Error(`PostgreSQL did not start; see ${join(home, 'postgres.log')}`);
  }
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    adminUrl: url,
    started: true,
    stop: async () => void asPostgres(join(bin, 'pg_ctl'), ['stop', '-m', 'fast', '-D', data], log),
  };
}

function ping(url) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = createConnection({ host: hostname, port: Number(port || 6379) });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(3000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(String(data).startsWith('+PONG')));
  });
}

/**
 * pebble, Let's Encrypt's ACME test server, for the ACME e2e test (Debian package `pebble`:
 * /usr/bin/pebble and /usr/bin/pebble-challtestsrv). The test starts its own instances.
 */
export function ensurePebble({ log }) {
  if (existsSync('/usr/bin/pebble') && existsSync('/usr/bin/pebble-challtestsrv')) return;
  aptInstall('pebble', log);
}

export async function ensureRedis({ url = 'redis://127.0.0.1:6379', home, log }) {
  if (await ping(url)) return { url, started: false, stop: async () => undefined };
  log(`Redis does not answer at the configured address; starting a private one under ${home}`);
  if (!existsSync('/usr/bin/redis-server')) aptInstall('redis-server', log);
  const dir = join(home, 'redis');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const port = await freePort();
  const child = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore',
  });
  const privateUrl = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 100 && !(await ping(privateUrl)); i++) await new Promise((r) => setTimeout(r, 100));
  if (!(await ping(privateUrl))) throw new Error('private Redis did not start');
  return {
    url: privateUrl,
    started: true,
    stop: async () => {
      child.kill('SIGTERM');
    },
  };
}
