import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './api-process';

export interface PrivatePostgres {
  /** The superuser `postgres` (trust authentication, loopback only). */
  adminUrl: string;
  port: number;
  /** Stops the server and deletes its data directory. */
  stop(): Promise<void>;
}

const isRoot = process.getuid?.() === 0;

function postgresBin(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base) ? readdirSync(base).filter((v) => existsSync(join(base, v, 'bin', 'initdb'))) : [];
  if (!versions.length) throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql');
  return join(base, versions.sort((a, b) => Number(b) - Number(a))[0], 'bin');
}

/** initdb and pg_ctl refuse to run as root: as the postgres user then (as scripts/services.mjs). */
function asPostgres(command: string, args: string[]): void {
  const [cmd, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
  const result = spawnSync(cmd, argv, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args[0]} failed: ${(result.stderr || result.stdout || '').trim()}`);
}

/**
 * A PostgreSQL server of the test's own, on a free loopback port, with `settings` as server
 * options (e.g. max_connections): for tests about server-wide limits, which the machine's shared
 * server cannot give (other tests use its connections). Removed entirely by stop().
 */
export async function startPrivatePostgres(settings: Record<string, string | number>): Promise<PrivatePostgres> {
  const bin = postgresBin();
  const home = mkdtempSync(join(tmpdir(), 'coffer-pg-'));
  const data = join(home, 'data');
  if (isRoot) spawnSync('chown', ['-R', 'postgres:postgres', home]);
  asPostgres(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  const options = [`-p ${port}`, '-c listen_addresses=127.0.0.1', `-k ${home}`, ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`)];
  const log = join(home, 'postgres.log');
  try {
    asPostgres(join(bin, 'pg_ctl'), ['start', '-w', '-D', data, '-l', log, '-o', options.join(' ')]);
  } catch (error) {
    const tail = existsSync(log) ? readFileSync(log, 'utf8').slice(-2000) : '';
    rmSync(home, { recursive: true, force: true });
    throw new Error(`${(error as Error).message}\n${tail}`);
  }
  return {
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      try {
        asPostgres(join(bin, 'pg_ctl'), ['stop', '-m', 'immediate', '-D', data]);
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    },
  };
}
