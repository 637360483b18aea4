import { ClientBase } from 'pg';
import { pgCode, PG_DUPLICATE_DATABASE, quoteIdent } from './pg';

export interface RoleSpec {
  name: string;
  password?: string;
}

/**
 * Creates (or corrects) the two roles Coffer needs. Needs a superuser or CREATEROLE connection,
 * so it runs only in installation tooling (the local start, the compose init), never in the API.
 *
 * - owner: owns every Coffer database and table, runs migrations, may create org databases.
 * - app: what the API and worker serve with; no DDL, owns nothing, cannot disable triggers.
 */
export async function ensureRoles(admin: ClientBase, roles: { owner: RoleSpec; app: RoleSpec }): Promise<void> {
  await ensureRole(admin, roles.owner, 'CREATEDB');
  await ensureRole(admin, roles.app, 'NOCREATEDB');
}

async function ensureRole(admin: ClientBase, role: RoleSpec, createDb: 'CREATEDB' | 'NOCREATEDB') {
  const { rowCount } = await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role.name]);
  const verb = rowCount ? 'ALTER' : 'CREATE';
  const password = role.password ? ` PASSWORD ${admin.escapeLiteral(role.password)}` : '';
  await admin.query(
    `${verb} ROLE ${quoteIdent(role.name)} LOGIN NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS ${createDb}${password}`,
  );
}

/** Creates a Coffer database owned by the connected (owner) role, reachable only by the app role. */
export async function ensureDatabase(owner: ClientBase, database: string, appRole: string): Promise<void> {
  const { rowCount } = await owner.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
  if (!rowCount) {
    try {
      await owner.query(`CREATE DATABASE ${quoteIdent(database)}`);
    } catch (error) {
      // Another provisioner won the race: the database exists, which is what we wanted.
      if (pgCode(error) !== PG_DUPLICATE_DATABASE) throw error;
    }
  }
  await owner.query(`REVOKE ALL ON DATABASE ${quoteIdent(database)} FROM PUBLIC`);
  await owner.query(`GRANT CONNECT ON DATABASE ${quoteIdent(database)} TO ${quoteIdent(appRole)}`);
}
