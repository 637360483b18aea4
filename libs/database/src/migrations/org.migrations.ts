import { GrantSpec } from '../grants';
import { MigrationSet } from '../migrator';
import { AUDIT_CHAIN_DDL, AUDIT_DELIVERY_DDL, AUDIT_LOG_DDL } from './audit-log.sql';
import { PACKAGES_DDL } from './packages.sql';

/**
 * Each organization's own database. Sensitive values (email, settings, key hashes) are bytea
 * written through a FieldCodec, so encrypting them changes their bytes, not the schema.
 */
export const orgMigrations: MigrationSet = {
  name: 'org',
  migrations: [
    {
      version: 1,
      name: 'users, api keys, settings, audit log',
      async up(db) {
        await db.query(`
          CREATE TABLE users (
            id text PRIMARY KEY,
            email bytea NOT NULL,
            email_index bytea NOT NULL UNIQUE,
            display_name text NOT NULL,
            role text NOT NULL CHECK (role IN ('admin', 'security_officer', 'member')),
            disabled_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
          );
          CREATE TABLE api_keys (
            id text PRIMARY KEY,
            user_id text NOT NULL REFERENCES users (id),
            name text NOT NULL,
            secret_hash bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz,
            revoked_at timestamptz,
            -- Set by the worker's sweep; authentication checks expires_at itself.
            expired_at timestamptz
          );
          CREATE INDEX api_keys_user ON api_keys (user_id);
          CREATE INDEX api_keys_due_to_expire ON api_keys (expires_at)
            WHERE revoked_at IS NULL AND expired_at IS NULL AND expires_at IS NOT NULL;
          CREATE TABLE org_settings (
            key text PRIMARY KEY,
            value bytea NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
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
    {
      version: 3,
      name: 'audit log delivery to the customer bucket',
      async up(db) {
        await db.query(AUDIT_DELIVERY_DDL);
      },
    },
    {
      // Reserved for the encrypted-fields migration of issue 3 (branch `fields`); replace on merge.
      version: 4,
      name: 'reserved: encrypted fields',
      async up() {},
    },
    {
      version: 5,
      name: 'packages, their versions, asset link keys',
      async up(db) {
        await db.query(PACKAGES_DDL);
      },
    },
  ],
};

export const orgGrants: GrantSpec = {
  coffer_migrations: 'read',
  users: 'read-write',
  api_keys: 'read-write',
  org_settings: 'read-write',
  audit_log: 'append-only',
  audit_checkpoints: 'append-only',
  audit_destination: 'read-write',
  audit_deliveries: 'read-write',
  packages: 'read-write',
  package_versions: 'read-write',
  link_keys: 'read-write',
};
