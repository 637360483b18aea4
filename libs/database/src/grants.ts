import { ClientBase } from 'pg';
import { quoteIdent } from './pg';

/**
 * What the app role may do with each table. A table missing from the spec gets nothing, so a
 * new table is unreachable by the app until someone decides its privileges here.
 */
export type TableAccess = 'read' | 'read-write' | 'append-only' | { read: true; update: readonly string[] };
export type GrantSpec = Readonly<Record<string, TableAccess>>;

const PRIVILEGES: Record<Extract<TableAccess, string>, string> = {
  read: 'SELECT',
  'read-write': 'SELECT, INSERT, UPDATE, DELETE',
  // The audit trail: rows can be added and read, never changed. Triggers back this up.
  'append-only': 'SELECT, INSERT',
};

/** Resets the app role's table privileges to exactly `spec`. Run by the owner, idempotent. */
export async function applyGrants(client: ClientBase, appRole: string, spec: GrantSpec): Promise<void> {
  const app = quoteIdent(appRole);
  await client.query('REVOKE CREATE ON SCHEMA public FROM PUBLIC');
  await client.query(`GRANT USAGE ON SCHEMA public TO ${app}`);
  await client.query(`REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ${app}`);
  for (const [table, access] of Object.entries(spec)) {
    // The object form: read, and change only the named columns (a rewrap swaps a wrapped key).
    const privileges = typeof access === 'string' ? PRIVILEGES[access] : `SELECT, UPDATE (${access.update.map(quoteIdent).join(', ')})`;
    await client.query(`GRANT ${privileges} ON ${quoteIdent(table)} TO ${app}`);
  }
}
