import { AppConfig, ConfigError } from '@coffer/config';
import { withClient } from './pg';

/**
 * Owner-role connections one process may open besides its budget: the migrator and the org
 * provisioner each use one short-lived connection at a time (docs/database-sizing.md).
 */
export const OWNER_CONNECTIONS_PER_PROCESS = 2;

export interface ServerLimits {
  maxConnections: number;
  superuserReserved: number;
  /** `reserved_connections` (PostgreSQL 16 and later; 0 before). */
  reserved: number;
}

export interface Sizing {
  needed: number;
  available: number;
  ok: boolean;
  /** One line: what was compared, and what to change when it does not fit. */
  message: string;
}

type SizingConfig = Pick<AppConfig, 'COFFER_PROCESS_COUNT' | 'DATABASE_CONNECTION_BUDGET' | 'DATABASE_TOOLS_CONNECTIONS'>;

/** Whether every process of the deployment at its full budget, plus the tools, fits the server. */
export function connectionSizing(config: SizingConfig, server: ServerLimits): Sizing {
  const processes = config.COFFER_PROCESS_COUNT;
  const perProcess = config.DATABASE_CONNECTION_BUDGET + OWNER_CONNECTIONS_PER_PROCESS;
  const needed = processes * perProcess + config.DATABASE_TOOLS_CONNECTIONS;
  const available = server.maxConnections - server.superuserReserved - server.reserved;
  const formula =
    `COFFER_PROCESS_COUNT=${processes} x (DATABASE_CONNECTION_BUDGET=${config.DATABASE_CONNECTION_BUDGET} + ` +
    `${OWNER_CONNECTIONS_PER_PROCESS} owner) + DATABASE_TOOLS_CONNECTIONS=${config.DATABASE_TOOLS_CONNECTIONS} = ${needed}`;
  const allowed =
    `max_connections ${server.maxConnections} - superuser_reserved_connections ${server.superuserReserved}` +
    (server.reserved ? ` - reserved_connections ${server.reserved}` : '') +
    ` = ${available}`;
  if (needed <= available) {
    return { needed, available, ok: true, message: `database connections fit: ${formula} <= ${allowed}` };
  }
  const budgetThatFits = Math.floor((available - config.DATABASE_TOOLS_CONNECTIONS) / processes) - OWNER_CONNECTIONS_PER_PROCESS;
  const lower = budgetThatFits >= 2 ? `lower DATABASE_CONNECTION_BUDGET to ${budgetThatFits} or ` : '';
  return {
    needed,
    available,
    ok: false,
    message:
      `refusing to start: the database connections of this deployment could exceed what PostgreSQL allows: ` +
      `${formula} > ${allowed}; ${lower}raise max_connections to ${needed + server.superuserReserved + server.reserved} ` +
      `(docs/database-sizing.md)`,
  };
}

/** The sizing check refused the deployment; its message is the whole log line. */
export class ConnectionSizingError extends ConfigError {
  constructor(line: string) {
    super([line]);
    this.message = line;
  }
}

/** What the server allows, read with the app role (pg_settings is readable by every role). */
export async function readServerLimits(appUrl: string): Promise<ServerLimits> {
  const { rows } = await withClient(appUrl, (c) =>
    c.query<{ name: string; setting: string }>(
      `SELECT name, setting FROM pg_settings
       WHERE name IN ('max_connections', 'superuser_reserved_connections', 'reserved_connections')`,
    ),
  );
  const value = (name: string) => Number(rows.find((r) => r.name === name)?.setting ?? 0);
  return {
    maxConnections: value('max_connections'),
    superuserReserved: value('superuser_reserved_connections'),
    reserved: value('reserved_connections'),
  };
}

/**
 * Run by the API and the worker before anything else uses the database: a deployment whose
 * processes could together take more connections than the server has would fail later, under
 * load, as errors on requests; it fails now, at start, with one line saying what to change.
 */
export async function checkConnectionSizing(config: AppConfig): Promise<Sizing> {
  const sizing = connectionSizing(config, await readServerLimits(config.DATABASE_APP_URL));
  if (!sizing.ok) throw new ConnectionSizingError(sizing.message);
  return sizing;
}
