import { createHash } from 'node:crypto';
import { escapeLiteral, type ClientBase } from 'pg';

/** One row of an audit chain, as stored and as hashed. */
export interface ChainedEntry {
  seq: number;
  id: string;
  occurredAt: Date;
  action: string;
  outcome: 'success' | 'failure';
  actor: Record<string, unknown>;
  target: Record<string, unknown> | null;
  requestId: string | null;
  clientIp: string | null;
  userAgent: string | null;
  body: Record<string, unknown>;
  prevHash: Buffer;
  hash: Buffer;
}

export type NewEntry = Omit<ChainedEntry, 'seq' | 'prevHash' | 'hash'>;

/**
 * JSON with object keys sorted at every depth (RFC 8785 for the values JSON.parse produces), so
 * the hash of an entry read back from jsonb equals the hash computed before it was written.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const fields = Object.keys(value)
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
  return `{${fields.join(',')}}`;
}

/** The `prev_hash` of entry 1: binds a chain to its org, so one org's log cannot pass as another's. */
export function genesisHash(chainId: string): Buffer {
  return createHash('sha256').update(`coffer-audit-genesis\0${chainId}`).digest();
}

/**
 * `sha256(prev_hash || "<seq>\n" || canonical JSON of the entry's content)`. The database
 * computes the same thing when it appends (coffer_audit_chain(), AUDIT_CHAIN_DDL) from the
 * canonical text the writer sends; verify recomputes it from the row as read back.
 */
export function entryHash(prevHash: Buffer, entry: Omit<ChainedEntry, 'prevHash' | 'hash'>): Buffer {
  return createHash('sha256').update(prevHash).update(`${entry.seq}\n${canonicalContent(entry)}`).digest();
}

function canonicalContent(entry: Omit<ChainedEntry, 'seq' | 'prevHash' | 'hash'>): string {
  const { id, occurredAt, action, outcome, actor, target, requestId, clientIp, userAgent, body } = entry;
  return canonicalJson({ id, occurredAt: occurredAt.toISOString(), action, outcome, actor, target, requestId, clientIp, userAgent, body });
}

const COLUMNS = ['id', 'occurred_at', 'action', 'outcome', 'actor', 'target', 'request_id', 'client_ip', 'user_agent', 'body', 'prev_hash', 'canonical'];

/**
 * The one statement that appends entries to the chain: the database's BEFORE INSERT trigger
 * takes the chain's transaction-scoped lock, reads the head and assigns each row its sequence
 * number, previous hash and hash. The lock is released by COMMIT or ROLLBACK, so writers
 * queue, a rolled-back append leaves no gap, and no two appends can extend the same head. Every
 * row offers the genesis hash as its `prev_hash`; the trigger keeps it only for entry 1.
 *
 * Values are inlined as escaped literals (pg's escapeLiteral, with explicit casts) rather than
 * bound, so that the statement can travel in one simple-protocol message with its COMMIT: the
 * chain's lock is then held only while the database works, never across a round trip to a
 * busy Node process (UnitOfWork.commit). That round trip was most of the lock's hold time.
 */
export function appendStatement(chainId: string, entries: NewEntry[]): string {
  const genesis = `'\\x${genesisHash(chainId).toString('hex')}'::bytea`;
  const text = (value: string | null) => (value === null ? 'NULL' : escapeLiteral(value));
  const json = (value: unknown) => `${value === null ? 'NULL' : escapeLiteral(JSON.stringify(value))}::jsonb`;
  const values = entries.map((e) =>
    [
      `${text(e.id)}::uuid`,
      `${text(e.occurredAt.toISOString())}::timestamptz`,
      text(e.action),
      text(e.outcome),
      json(e.actor),
      json(e.target),
      text(e.requestId),
      text(e.clientIp),
      text(e.userAgent),
      json(e.body),
      genesis,
      text(canonicalContent(e)),
    ].join(', '),
  );
  return `INSERT INTO audit_log (${COLUMNS.join(', ')}) VALUES (${values.join('), (')})`;
}

/** Appends entries on `client`, inside its transaction, and returns them as chained. */
export async function appendToChain(client: ClientBase, chainId: string, entries: NewEntry[]): Promise<ChainedEntry[]> {
  if (!entries.length) return [];
  const { rows: chained } = await client.query<{ seq: string; prev_hash: Buffer; hash: Buffer }>(
    `${appendStatement(chainId, entries)} RETURNING seq, prev_hash, hash`,
  );
  return entries.map((e, i) => ({ ...e, seq: Number(chained[i].seq), prevHash: chained[i].prev_hash, hash: chained[i].hash }));
}

export interface AuditRow {
  seq: string;
  id: string;
  occurred_at: Date;
  action: string;
  outcome: 'success' | 'failure';
  actor: Record<string, unknown>;
  target: Record<string, unknown> | null;
  request_id: string | null;
  client_ip: string | null;
  user_agent: string | null;
  body: Record<string, unknown>;
  prev_hash: Buffer;
  hash: Buffer;
}

export function fromRow(row: AuditRow): ChainedEntry {
  return {
    seq: Number(row.seq),
    id: row.id,
    occurredAt: row.occurred_at,
    action: row.action,
    outcome: row.outcome,
    actor: row.actor,
    target: row.target,
    requestId: row.request_id,
    clientIp: row.client_ip,
    userAgent: row.user_agent,
    body: row.body,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

export interface VerifyResult {
  valid: boolean;
  /** The last sequence number found intact (0 when the first entry is already bad). */
  checkedThrough: number;
  firstBadSequence?: number;
  reason?: string;
  /**
   * The checkpoint that caught the change, when one did: `storage:anchors/<chain>/<seq>.json`
   * (outside PostgreSQL), `database:audit_checkpoints/<seq>`, or (offline) the digest's file.
   */
  anchor?: string;
}

/**
 * Walks a chain in sequence order. Reports the first entry that is missing (a gap), out of
 * place, edited (its hash no longer matches its content) or not linked to its predecessor.
 */
export class ChainVerifier {
  private expectedSeq = 1;
  private prevHash: Buffer;
  private failure?: { seq: number; reason: string; anchor?: string };

  /** From genesis, or from a point already trusted (`from`: a sequence number and the chain's hash there). */
  constructor(chainId: string, from?: { seq: number; hash: Buffer }) {
    this.prevHash = from?.hash ?? genesisHash(chainId);
    this.expectedSeq = (from?.seq ?? 0) + 1;
  }

  /** Feeds the next entry; false once the chain is broken (later entries are not looked at). */
  next(entry: ChainedEntry): boolean {
    if (this.failure) return false;
    const fail = (reason: string) => {
      this.failure = { seq: this.expectedSeq, reason };
      return false;
    };
    if (entry.seq !== this.expectedSeq) {
      return fail(entry.seq > this.expectedSeq ? `entry ${this.expectedSeq} is missing` : `entry ${entry.seq} is out of order`);
    }
    if (!entry.prevHash.equals(this.prevHash)) return fail(`entry ${entry.seq} does not link to the previous entry`);
    if (!entryHash(this.prevHash, entry).equals(entry.hash)) return fail(`entry ${entry.seq} was altered after it was written`);
    this.prevHash = entry.hash;
    this.expectedSeq++;
    return true;
  }

  /** The hash the chain had at `seq`, if verification got that far. */
  get head(): { seq: number; hash: Buffer } {
    return { seq: this.expectedSeq - 1, hash: this.prevHash };
  }

  /**
   * Marks the chain bad at `seq` for a reason found outside the chain itself (a checkpoint,
   * named by `anchor`). The earliest failure is kept; at the same sequence number, the first
   * one a checkpoint caught.
   */
  failAt(seq: number, reason: string, anchor?: string): void {
    const earlier = !this.failure || seq < this.failure.seq;
    const named = this.failure?.seq === seq && !this.failure.anchor && anchor !== undefined;
    if (earlier || named) this.failure = { seq, reason, anchor };
  }

  result(): VerifyResult {
    if (this.failure) {
      const { seq, reason, anchor } = this.failure;
      return { valid: false, checkedThrough: seq - 1, firstBadSequence: seq, reason, ...(anchor && { anchor }) };
    }
    return { valid: true, checkedThrough: this.expectedSeq - 1 };
  }
}
