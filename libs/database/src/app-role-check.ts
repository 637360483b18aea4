import { AppConfig, ConfigError } from '@coffer/config';
import { roleOf, withClient } from './pg';

/** The API or the worker was handed a database role that could rewrite the audit trail. */
export class AppRoleError extends ConfigError {
  constructor(line: string) {
    super([line]);
    this.message = line;
  }
}

/**
 * What makes a role unfit to serve requests: anything that lets it drop the audit triggers,
 * change a table or grant itself more. Empty when the role is fit.
 */
export async function appRoleProblems(appUrl: string): Promise<string[]> {
  return withClient(appUrl, async (client) => {
    const { rows } = await client.query<{ rolsuper: boolean; rolcreatedb: boolean; rolcreaterole: boolean; rolbypassrls: boolean; owned: string[] }>(
      `SELECT r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolbypassrls,
              ARRAY(SELECT c.relname::text FROM pg_class c
                    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
                      AND pg_has_role(r.oid, c.relowner, 'USAGE')
                    ORDER BY c.relname LIMIT 5) AS owned
       FROM pg_roles r WHERE r.rolname = current_user`,
    );
    const [role] = rows;
    const problems: string[] = [];
    if (role.rolsuper) problems.push('is a superuser');
    if (role.rolcreatedb) problems.push('has CREATEDB');
    if (role.rolcreaterole) problems.push('has CREATEROLE');
    if (role.rolbypassrls) problems.push('has BYPASSRLS');
    if (role.owned.length) problems.push(`owns (or is a member of the owner of) ${role.owned.join(', ')}`);
    return problems;
  });
}

/**
 * Run by the API and the worker before they serve anything: the app role must own nothing and
 * hold no role attribute beyond LOGIN (the README's "Database roles"), so that code running in
 * these processes cannot touch the audit triggers, whatever it does.
 */
export async function checkAppRole(config: Pick<AppConfig, 'DATABASE_APP_URL'>): Promise<void> {
  const problems = await appRoleProblems(config.DATABASE_APP_URL);
  if (problems.length) {
    throw new AppRoleError(
      `refusing to start: DATABASE_APP_URL's role ${roleOf(config.DATABASE_APP_URL)} ${problems.join(', ')}; ` +
        'the API and the worker need the app role, which owns nothing and has only LOGIN',
    );
  }
}
