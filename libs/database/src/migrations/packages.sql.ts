/**
 * KB packages (libs/packages). A version row exists from the moment its upload starts
 * (`uploading`, no version number, committed on its own so a crash leaves a trace the sweep can
 * follow); it gets its number and becomes visible only when the upload commits. `deleted`
 * versions keep their number (never reused); `purged_at` says their objects are gone.
 */
export const PACKAGES_DDL = `
  CREATE TABLE packages (
    id text PRIMARY KEY,
    name text NOT NULL,
    last_version integer NOT NULL DEFAULT 0,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
  );
  CREATE UNIQUE INDEX packages_live_name ON packages (name) WHERE deleted_at IS NULL;
  CREATE TABLE package_versions (
    id text PRIMARY KEY,
    package_name text NOT NULL,
    package_id text REFERENCES packages (id),
    version integer,
    state text NOT NULL CHECK (state IN ('uploading', 'committed', 'deleted')),
    size bigint,
    sha256 bytea,
    content_type text NOT NULL,
    wrapped_dek text NOT NULL,
    kms_key_version integer NOT NULL,
    manifest_key text NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    committed_at timestamptz,
    deleted_at timestamptz,
    purged_at timestamptz,
    UNIQUE (package_id, version),
    CHECK ((state = 'uploading') = (version IS NULL) OR state = 'deleted')
  );
  CREATE INDEX package_versions_to_sweep ON package_versions (updated_at)
    WHERE state = 'uploading' OR (state = 'deleted' AND purged_at IS NULL);
  -- Keys signing the org's asset links, stored wrapped by the org's KMS key. At most one is
  -- current; revoking all links revokes it (its links then fail) and the next link makes another.
  CREATE TABLE link_keys (
    id text PRIMARY KEY,
    wrapped_key text NOT NULL,
    kms_key_version integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
  );
  CREATE UNIQUE INDEX link_keys_one_current ON link_keys ((true)) WHERE revoked_at IS NULL;
`;
