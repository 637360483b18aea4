import { GrantSpec } from '../grants';
import { MigrationSet } from '../migrator';
import { AUDIT_CHAIN_DDL, AUDIT_LOG_DDL } from './audit-log.sql';

/** The control-plane database: the org registry and platform-level identity. */
export const controlMigrations: MigrationSet = {
  name: 'control',
  migrations: [
    {
      version: 1,
      name: 'organizations, platform admin tokens, audit log',
      async up(db) {
        await db.query(`
          CREATE TABLE organizations (
            id text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
            slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$'),
            name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
            -- Which PostgreSQL server holds the org database, so orgs can be spread over several.
            database_server text NOT NULL DEFAULT 'primary',
            database_name text NOT NULL UNIQUE,
            status text NOT NULL DEFAULT 'provisioning' CHECK (status IN ('provisioning', 'active')),
            created_at timestamptz NOT NULL DEFAULT now(),
            provisioned_at timestamptz
          );
          CREATE TABLE platform_admin_tokens (
            id text PRIMARY KEY,
            label text NOT NULL,
            secret_hash bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
          );
          ${AUDIT_LOG_DDL}
        `);
      },
    },
    {
      version: 2,
      name: 'audit log hash chain and checkpoints',
      async up(db) {
        await db.query(AUDIT_CHAIN_DDL);
      },
    },
  ],
};

export const controlGrants: GrantSpec = {
  coffer_migrations: 'read',
  organizations: 'read',
  platform_admin_tokens: 'read',
  audit_log: 'append-only',
  audit_checkpoints: 'append-only',
};
