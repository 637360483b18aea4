import { Client, ClientBase, Pool } from 'pg';
import { scopedPoolOf } from './unit-of-work';

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** The same server and credentials as `url`, another database. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

export function databaseOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1));
}

export function roleOf(url: string): string {
  return decodeURIComponent(new URL(url).username);
}

/** The owner's URL, in the processes that hold it (`coffer migrate`, the provisioner, tests). */
export function ownerUrlOf(config: { DATABASE_OWNER_URL?: string }): string {
  if (!config.DATABASE_OWNER_URL) throw new Error("this process holds no DATABASE_OWNER_URL: only `coffer migrate` and the provisioner use the owner's credentials");
  return config.DATABASE_OWNER_URL;
}

/** A transaction on `pool`; inside a unit of work, a savepoint of the unit's transaction. */
export async function transaction<T>(pool: Pool, fn: (client: ClientBase) => Promise<T>): Promise<T> {
  const scoped = scopedPoolOf(pool);
  if (scoped) return scoped.unit.savepoint(scoped.key, scoped.pool, fn);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/** A short-lived connection for administrative work (migrations, provisioning). */
export async function withClient<T>(url: string, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url, application_name: 'coffer-admin' });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export const PG_UNIQUE_VIOLATION = '23505';
export const PG_DUPLICATE_DATABASE = '42P04';
export const PG_UNDEFINED_TABLE = '42P01';

export function pgCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error
    ? String((error as { code: unknown }).code)
    : undefined;
}
