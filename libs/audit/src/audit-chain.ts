import { createHash } from 'node:crypto';
import type { ClientBase } from 'pg';

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

export function entryHash(prevHash: Buffer, entry: Omit<ChainedEntry, 'prevHash' | 'hash'>): Buffer {
  const { seq, id, occurredAt, action, outcome, actor, target, requestId, clientIp, userAgent, body } = entry;
  const canonical = canonicalJson({
    seq,
    id,
    occurredAt: occurredAt.toISOString(),
    action,
    outcome,
    actor,
    target,
    requestId,
    clientIp,
    userAgent,
    body,
  });
  return createHash('sha256').update(prevHash).update(canonical).digest();
}

/**
 * Any constant will do: each chain lives in its own database, and advisory locks are per
 * database. Held to the end of the transaction, it orders appends exactly as they commit.
 */
const CHAIN_LOCK = 0x636f66666572; // "coffer"

/**
 * Appends entries to the chain on `client`, which must be inside a transaction: the lock is
 * released by its COMMIT or ROLLBACK, so no other writer sees a head that may still vanish, and
 * the sequence stays gap-free (a rolled-back append leaves nothing behind).
 */
export async function appendToChain(client: ClientBase, chainId: string, entries: NewEntry[]): Promise<ChainedEntry[]> {
  if (!entries.length) return [];
  await client.query('SELECT pg_advisory_xact_lock($1)', [CHAIN_LOCK]);
  const { rows } = await client.query<{ seq: string; hash: Buffer }>('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1');
  let seq = rows[0] ? Number(rows[0].seq) : 0;
  let prevHash = rows[0]?.hash ?? genesisHash(chainId);
  const chained = entries.map((entry) => {
    const withSeq = { ...entry, seq: ++seq };
    const hash = entryHash(prevHash, withSeq);
    const row = { ...withSeq, prevHash, hash };
    prevHash = hash;
    return row;
  });
  const columns = chained.map((_, i) => `(${Array.from({ length: 13 }, (_, j) => `$${i * 13 + j + 1}`).join(', ')})`);
  await client.query(
    `INSERT INTO audit_log (seq, id, occurred_at, action, outcome, actor, target, request_id, client_ip, user_agent, body, prev_hash, hash)
     VALUES ${columns.join(', ')}`,
    chained.flatMap((e) => [
      e.seq,
      e.id,
      e.occurredAt,
      e.action,
      e.outcome,
      JSON.stringify(e.actor),
      e.target === null ? null : JSON.stringify(e.target),
      e.requestId,
      e.clientIp,
      e.userAgent,
      JSON.stringify(e.body),
      e.prevHash,
      e.hash,
    ]),
  );
  return chained;
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
}

/**
 * Walks a chain in sequence order. Reports the first entry that is missing (a gap), out of
 * place, edited (its hash no longer matches its content) or not linked to its predecessor.
 */
export class ChainVerifier {
  private expectedSeq = 1;
  private prevHash: Buffer;
  private failure?: { seq: number; reason: string };

  constructor(chainId: string) {
    this.prevHash = genesisHash(chainId);
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

  /** Marks the chain bad at `seq` for a reason found outside the chain itself (a checkpoint). */
  failAt(seq: number, reason: string): void {
    if (!this.failure || seq < this.failure.seq) this.failure = { seq, reason };
  }

  result(): VerifyResult {
    if (this.failure) {
      return { valid: false, checkedThrough: this.failure.seq - 1, firstBadSequence: this.failure.seq, reason: this.failure.reason };
    }
    return { valid: true, checkedThrough: this.expectedSeq - 1 };
  }
}
