/**
 * The write spool (libs/spool). `spool_keys` holds each org's one X25519 key pair: the private
 * key is a KMS data key stored only wrapped (rotation rewraps it), the public key in clear, so
 * a write can be sealed to it with the KMS down. `pending_writes` is the queue, in `seq` order;
 * a queued package version waits in `package_versions` as `pending` (no number, invisible),
 * its DEK sealed to the spool key (`spool:<keyId>:...`) instead of wrapped by the KMS.
 */
export const SPOOL_DDL = `
  CREATE TABLE spool_keys (
    id text PRIMARY KEY,
    wrapped_key text NOT NULL,
    kms_key_version integer NOT NULL,
    public_key bytea NOT NULL CHECK (length(public_key) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE UNIQUE INDEX spool_keys_one ON spool_keys ((true));
  CREATE TABLE pending_writes (
    id text PRIMARY KEY,
    seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    kind text NOT NULL CHECK (kind IN ('package.version')),
    target text NOT NULL UNIQUE,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'flushed', 'failed')),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    flushed_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    CHECK ((status = 'flushed') = (flushed_at IS NOT NULL))
  );
  CREATE INDEX pending_writes_due ON pending_writes (seq) WHERE status = 'pending';
  ALTER TABLE package_versions DROP CONSTRAINT package_versions_state_check;
  ALTER TABLE package_versions ADD CONSTRAINT package_versions_state_check
    CHECK (state IN ('uploading', 'pending', 'committed', 'deleted'));
  ALTER TABLE package_versions DROP CONSTRAINT package_versions_check;
  ALTER TABLE package_versions ADD CONSTRAINT package_versions_check
    CHECK ((state IN ('uploading', 'pending')) = (version IS NULL) OR state = 'deleted');
  CREATE INDEX package_versions_pending ON package_versions (package_name) WHERE state = 'pending';
`;
