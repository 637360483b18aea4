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
