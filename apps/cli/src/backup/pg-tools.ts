import { spawn, spawnSync } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { CommandRefused } from '../usage-error';

/**
 * pg_dump and pg_restore, run as the owner role. The password goes through PGPASSWORD, never the
 * command line (where `ps` would show it).
 */
export function libpqTarget(url: string, database: string): { dbname: string; env: NodeJS.ProcessEnv } {
  const parsed = new URL(url);
  const password = decodeURIComponent(parsed.password);
  parsed.password = '';
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return { dbname: parsed.toString(), env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: process.env.PGCONNECT_TIMEOUT ?? '10' } };
}

/** The major version of a PostgreSQL client tool on PATH; refuses when it is missing. */
export function toolMajor(tool: 'pg_dump' | 'pg_restore'): { major: number; version: string } {
  const run = spawnSync(tool, ['--version'], { encoding: 'utf8' });
  const version = run.status === 0 ? /(\d+)(\.\d+)?/.exec(run.stdout)?.[0] : undefined;
  if (!version) {
    throw new CommandRefused(`${tool} is not installed (or not on PATH): install the PostgreSQL client tools (postgresql-client), of the server's major version or newer`);
  }
  return { major: Number(version.split('.')[0]), version };
}

/** `pg_dump --format=custom` of one database, its output to `sink` chunk by chunk. */
export async function pgDump(url: string, database: string, sink: (bytes: Buffer) => Promise<void>): Promise<void> {
  const { dbname, env } = libpqTarget(url, database);
  const child = spawn('pg_dump', ['--format=custom', '--no-password', `--dbname=${dbname}`], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = collect(child.stderr);
  const exited = new Promise<number | null>((resolve, reject) => child.once('error', reject).once('close', resolve));
  try {
    for await (const piece of child.stdout as AsyncIterable<Buffer>) await sink(piece);
  } catch (error) {
    child.kill('SIGTERM');
    await exited.catch(() => undefined);
    throw error;
  }
  const code = await exited;
  if (code !== 0) throw new Error(`pg_dump of ${database} failed (exit code ${code}): ${(await stderr).trim()}`);
}

/** A pg_restore of one database, in one transaction, fed through `write`; `end` waits for it. */
export function pgRestore(url: string, database: string): { write(bytes: Buffer): Promise<void>; end(): Promise<void> } {
  const { dbname, env } = libpqTarget(url, database);
  const child = spawn('pg_restore', ['--exit-on-error', '--single-transaction', '--no-password', `--dbname=${dbname}`], { env, stdio: ['pipe', 'ignore', 'pipe'] });
  const stderr = collect(child.stderr);
  const exited = new Promise<number | null>((resolve, reject) => child.once('error', reject).once('close', resolve));
  const failed = async (code: number | null) => new Error(`pg_restore into ${database} failed (exit code ${code}): ${(await stderr).trim()}`);
  // An early exit (an error) closes its stdin: writes then fail with EPIPE, reported as the exit.
  child.stdin.on('error', () => undefined);
  return {
    async write(bytes) {
      if (child.exitCode !== null) throw await failed(child.exitCode);
      if (!(child.stdin as Writable).write(bytes)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            child.stdin.off('drain', done);
            child.off('close', done);
            resolve();
          };
          child.stdin.once('drain', done);
          child.once('close', done);
        });
      }
    },
    async end() {
      child.stdin.end();
      const code = await exited;
      if (code !== 0) throw await failed(code);
    },
  };
}

/** A child's stderr, its last 8 KiB. */
function collect(stream: Readable): Promise<string> {
  let text = '';
  stream.on('data', (c: Buffer) => {
    text = (text + c.toString('utf8')).slice(-8192);
  });
  return new Promise((resolve) => stream.once('close', () => resolve(text)));
}
