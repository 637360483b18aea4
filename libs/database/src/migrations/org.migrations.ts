import { GrantSpec } from '../grants';
import { MigrationSet } from '../migrator';
import { AUDIT_CHAIN_DDL, AUDIT_DELIVERY_DDL, AUDIT_LOG_DDL } from './audit-log.sql';
import { PACKAGES_DDL } from './packages.sql';
import { SPOOL_DDL } from './spool.sql';

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
      version: 4,
      name: 'field keys: the wrapped data keys of encrypted fields and the blind index',
      async up(db) {
        // Only wrapped keys (`vault:vN:...`/`local:vN:...`); the org's KMS key unwraps them.
        await db.query(`
          CREATE TABLE field_keys (
            id integer PRIMARY KEY CHECK (id > 0),
            purpose text NOT NULL CHECK (purpose IN ('field', 'index')),
            wrapped text NOT NULL,
            kms_key_version integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
          );
          CREATE UNIQUE INDEX field_keys_one_index_key ON field_keys (purpose) WHERE purpose = 'index';
        `);
      },
    },
    {
      version: 5,
      name: 'packages, their versions, asset link keys',
      async up(db) {
        await db.query(PACKAGES_DDL);
      },
    },
    {
      version: 6,
      name: 'write spool: the spool key and writes queued through a KMS outage',
      async up(db) {
        await db.query(SPOOL_DDL);
      },
    },
    {
      version: 7,
      name: 'asset links revoked one by one (until they would have expired)',
      async up(db) {
        await db.query(`
          CREATE TABLE revoked_asset_links (
            id text PRIMARY KEY,
            revoked_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL
          );
        `);
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
  // Written at provisioning by the owner: the app role cannot add, drop or repurpose a key
  // under data; the rewrap (libs/keys) may swap a key's wrapping, nothing else.
  field_keys: { read: true, update: ['wrapped', 'kms_key_version'] },
  packages: 'read-write',
  package_versions: 'read-write',
  link_keys: 'read-write',
  revoked_asset_links: 'read-write',
  // Like field_keys: made by the owner at provisioning; the rewrap may only swap its wrapping.
  spool_keys: { read: true, update: ['wrapped_key', 'kms_key_version'] },
  pending_writes: 'read-write',
};
