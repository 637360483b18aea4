import { ClientBase } from 'pg';
import { pgCode, PG_UNDEFINED_TABLE } from './pg';

export interface Migration {
  version: number;
  name: string;
  up(client: ClientBase): Promise<void>;
}

export interface MigrationSet {
  /** Also the advisory-lock namespace: two processes never migrate the same database at once. */
  name: 'control' | 'org';
  migrations: readonly Migration[];
}

export class SchemaTooNewError extends Error {
  readonly code = 'schema_too_new';
  constructor(database: string, found: number, known: number) {
    super(
      `database ${database} is at schema version ${found} but this Coffer knows only up to ${known}; ` +
        'refusing to run an older Coffer against a newer database (upgrade Coffer, or restore the database backup taken before the upgrade)',
    );
  }
}

export function latestVersion(set: MigrationSet): number {
  return set.migrations.reduce((max, m) => Math.max(max, m.version), 0);
}

export async function schemaVersion(client: ClientBase): Promise<number> {
  try {
    const { rows } = await client.query<{ v: number | null }>('SELECT max(version)::int AS v FROM coffer_migrations');
    return rows[0].v ?? 0;
  } catch (error) {
    if (pgCode(error) === PG_UNDEFINED_TABLE) return 0;
    throw error;
  }
}

/**
 * Applies pending migrations, each in its own transaction, under a session advisory lock so
 * that concurrent starts (several API replicas) serialize instead of racing. `afterSchema` runs
 * under the same lock once the schema is current: data steps that need more than SQL (the KMS)
 * and must therefore be code, idempotent, since they run on every start.
 */
export async function migrate(
  client: ClientBase,
  set: MigrationSet,
  afterSchema?: (client: ClientBase) => Promise<unknown>,
): Promise<{ from: number; to: number }> {
  assertWellFormed(set);
  const lockKey = `coffer:migrate:${set.name}`;
  await client.query('SELECT pg_advisory_lock(hashtext($1))', [lockKey]);
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS coffer_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const from = await schemaVersion(client);
    const known = latestVersion(set);
    if (from > known) {
      const { rows } = await client.query<{ db: string }>('SELECT current_database() AS db');
      throw new SchemaTooNewError(rows[0].db, from, known);
    }
    for (const migration of set.migrations.filter((m) => m.version > from)) {
      await client.query('BEGIN');
      try {
        await migration.up(client);
        await client.query('INSERT INTO coffer_migrations (version, name) VALUES ($1, $2)', [
          migration.version,
          migration.name,
        ]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      }
    }
    await afterSchema?.(client);
    return { from, to: known };
  } finally {
    await client.query('SELECT pg_advisory_unlock(hashtext($1))', [lockKey]);
  }
}

export function assertWellFormed(set: MigrationSet): void {
  set.migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new Error(`${set.name} migration #${i + 1} (${m.name}) has version ${m.version}; versions must be 1, 2, 3, ...`);
    }
  });
}
