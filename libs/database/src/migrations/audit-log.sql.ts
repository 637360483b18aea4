/**
 * The audit table every Coffer database has from its first migration. Append-only twice over:
 * the app role holds only SELECT and INSERT on it (grants.ts), and these triggers reject
 * UPDATE, DELETE and TRUNCATE from anyone, the owner included, unless the owner first drops
 * them with DDL, which the app role cannot do.
 */
export const AUDIT_LOG_DDL = `
CREATE TABLE audit_log (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
  occurred_at timestamptz NOT NULL DEFAULT now(),
  action text NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('success', 'failure')),
  actor jsonb NOT NULL,
  target jsonb,
  request_id text,
  client_ip text,
  user_agent text,
  body jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_occurred_at ON audit_log (occurred_at);

CREATE FUNCTION coffer_reject_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only: % rejected', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION coffer_reject_audit_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION coffer_reject_audit_change();
`;

/**
 * The hash chain (libs/audit/README.md). The database itself places every new row: a BEFORE
 * INSERT trigger takes a transaction-scoped advisory lock (any constant will do: a chain is a
 * database, and advisory locks are per database), reads the head with a fresh snapshot (each
 * statement of a volatile function takes one, so it sees every append committed while it
 * waited), and sets the row's gap-free `seq`, its `prev_hash` (the head's hash; for entry 1,
 * the genesis hash the writer offers) and its `hash` over the canonical text the writer sent,
 * which is not kept. Whoever inserts, the app role included, cannot choose a row's place in
 * the chain. Appending is one statement, and the lock is held only from it to COMMIT.
 * Checkpoints sign the hash at a sequence number with a key the database never sees.
 */
export const AUDIT_CHAIN_DDL = `
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM audit_log) THEN
    RAISE EXCEPTION 'audit_log has entries from before the hash chain; chaining them is not supported';
  END IF;
END $$;
ALTER TABLE audit_log ALTER COLUMN seq DROP IDENTITY;
ALTER TABLE audit_log ALTER COLUMN occurred_at DROP DEFAULT;
ALTER TABLE audit_log ADD COLUMN prev_hash bytea NOT NULL, ADD COLUMN hash bytea NOT NULL, ADD COLUMN canonical text;
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_actor ON audit_log ((actor->>'id'), seq);

CREATE FUNCTION coffer_audit_chain() RETURNS trigger LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  last record;
BEGIN
  PERFORM pg_advisory_xact_lock(${0x636f66666572});
  SELECT seq, hash INTO last FROM audit_log ORDER BY seq DESC LIMIT 1;
  IF NEW.canonical IS NULL THEN
    RAISE EXCEPTION 'audit_log insert without its canonical text' USING ERRCODE = 'not_null_violation';
  END IF;
  NEW.seq := coalesce(last.seq, 0) + 1;
  NEW.prev_hash := coalesce(last.hash, NEW.prev_hash);
  NEW.hash := sha256(NEW.prev_hash || convert_to(NEW.seq::text || E'\\n' || NEW.canonical, 'UTF8'));
  NEW.canonical := NULL;
  RETURN NEW;
END
$$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
  FOR EACH ROW EXECUTE FUNCTION coffer_audit_chain();

CREATE TABLE audit_checkpoints (
  seq bigint PRIMARY KEY,
  hash bytea NOT NULL,
  key_name text NOT NULL,
  signature text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER audit_checkpoints_no_update_delete BEFORE UPDATE OR DELETE ON audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION coffer_reject_audit_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION coffer_reject_audit_change();
`;

/**
 * Delivery of an org's chain to its own bucket (libs/audit/README.md). The destination's
 * credentials are stored sealed under a data key of their own, wrapped by the org's KMS key.
 * A batch is planned (its sequence range fixed) before anything is uploaded, so that a worker
 * that dies mid-delivery uploads the very same objects again, byte for byte, and the digests
 * chain without a fork.
 */
export const AUDIT_DELIVERY_DDL = `
CREATE TABLE audit_destination (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  endpoint text NOT NULL,
  region text NOT NULL,
  bucket text NOT NULL,
  prefix text NOT NULL,
  credentials_key text NOT NULL,
  credentials bytea NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_deliveries (
  batch bigint PRIMARY KEY,
  first_seq bigint NOT NULL,
  last_seq bigint NOT NULL,
  planned_at timestamptz NOT NULL,
  previous_digest_sha256 bytea,
  digest_sha256 bytea,
  delivered_at timestamptz,
  CHECK (first_seq <= last_seq)
);
`;
