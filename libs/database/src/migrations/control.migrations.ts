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
    {
      version: 3,
      name: 'local KMS: versioned keys wrapped under the master key',
      async up(db) {
        // One row per key (what changes) and one per key version (never changes: the app role
        // may only add versions, so a key's material cannot be swapped under existing data).
        await db.query(`
          CREATE TABLE kms_key_state (
            name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,128}$'),
            type text NOT NULL CHECK (type IN ('aes256-gcm96', 'ed25519')),
            latest_version integer NOT NULL CHECK (latest_version >= 1),
            min_decryption_version integer NOT NULL DEFAULT 1
              CHECK (min_decryption_version BETWEEN 1 AND latest_version),
            created_at timestamptz NOT NULL DEFAULT now()
          );
          CREATE TABLE kms_keys (
            name text NOT NULL REFERENCES kms_key_state (name),
            version integer NOT NULL CHECK (version >= 1),
            type text NOT NULL CHECK (type IN ('aes256-gcm96', 'ed25519')),
            -- nonce || AES-256-GCM ciphertext || tag under the master key; name, version and
            -- type are the associated data, so a row copied to another key does not unwrap.
            wrapped_material bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (name, version)
          );
        `);
      },
    },
    {
      version: 4,
      name: 'TLS certificates and the ACME account, private keys sealed under the platform key',
      async up(db) {
        // Private keys are AES-256-GCM under a data key of their own (wrapped by the KMS key
        // coffer-platform), with the table, row and column as associated data: a sealed key
        // copied to another row does not open. Certificates themselves are public.
        await db.query(`
          CREATE TABLE tls_certificates (
            id text PRIMARY KEY CHECK (id ~ '^[a-z0-9-]{1,64}$'),
            source text NOT NULL CHECK (source IN ('acme', 'internal-ca', 'files')),
            domains text[] NOT NULL CHECK (cardinality(domains) >= 1),
            issuer text,
            serial text,
            not_before timestamptz,
            not_after timestamptz,
            cert_pem text,
            key_wrapped_dek text,
            key_sealed bytea,
            -- The due dates the worker's schedule looks for (ADR 0005): renewal from
            -- renew_after, and after a failure not before next_attempt_at.
            renew_after timestamptz NOT NULL,
            next_attempt_at timestamptz,
            last_attempt_at timestamptz,
            last_error text,
            failures integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
            retired_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CHECK ((cert_pem IS NULL) = (key_sealed IS NULL) AND (key_sealed IS NULL) = (key_wrapped_dek IS NULL))
          );
          CREATE INDEX tls_certificates_due ON tls_certificates (renew_after) WHERE retired_at IS NULL;
          CREATE TABLE acme_accounts (
            directory_url text PRIMARY KEY,
            key_wrapped_dek text NOT NULL,
            key_sealed bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
          );
        `);
      },
    },
    {
      version: 5,
      name: 'org key rotation schedule and rewrap progress',
      async up(db) {
        // The due date lives here, not in the KMS, so that the worker's sweep finds due keys with
        // one query and a missed tick heals itself (ADR 0005).
        await db.query(`
          CREATE TABLE org_keys (
            org_id text PRIMARY KEY REFERENCES organizations (id),
            key_name text NOT NULL UNIQUE,
            latest_version integer NOT NULL DEFAULT 1,
            last_rotated_at timestamptz,
            next_rotation_at timestamptz NOT NULL,
            -- Rewrap: stored data keys still wrapped under an older version, as last counted.
            rewrap_remaining integer NOT NULL DEFAULT 0,
            rewrap_completed_at timestamptz,
            -- Versions below this no longer decrypt (KEY_RETIRE_OLD_VERSIONS); 1 = none retired.
            min_decryption_version integer NOT NULL DEFAULT 1
          );
          CREATE INDEX org_keys_due ON org_keys (next_rotation_at);
        `);
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
  kms_key_state: 'read-write',
  kms_keys: 'append-only',
  tls_certificates: 'read-write',
  // An account key is never replaced: renewals must keep the account (and its rate limits).
  acme_accounts: 'append-only',
  org_keys: 'read-write',
};
