import { Injectable } from '@nestjs/common';
import type { ClientBase, Pool } from 'pg';
import { CONTROL, DatabaseService, OutsideTransaction } from '@coffer/database';
import type { OrgRef } from '@coffer/tenancy';
import { appendStatement, AuditRow, ChainedEntry, fromRow, NewEntry } from './audit-chain';
import { sanitizeEntry, sanitizeIfRefused } from './audit-sanitize';

/** Which chain an entry belongs to: an org's (in its database) or the control plane's. */
export interface AuditChain {
  /** Bound into the chain's first hash: the org id, or `control`. */
  id: string;
  /** The unit-of-work key of the chain's database. */
  key: string;
  pool(): Pool;
}

export interface AuditQuery {
  action?: string;
  actor?: string;
  outcome?: 'success' | 'failure';
  from?: Date;
  to?: Date;
  /** Entries older than this sequence number (the previous page's last). */
  before?: number;
  limit: number;
}

@Injectable()
export class AuditRepository {
  constructor(private readonly db: DatabaseService) {}

  chain(org: OrgRef | undefined): AuditChain {
    if (!org) return { id: CONTROL, key: CONTROL, pool: () => this.db.control };
    return { id: org.id, key: org.databaseName, pool: () => this.db.org(org.databaseName, org.databaseServer) };
  }

  /**
   * The statement that appends `entries`, for the unit of work to send with its COMMIT. An entry
   * PostgreSQL would refuse as written (a NUL, a lone surrogate) goes in sanitized (audit-sanitize).
   */
  appendStatement(chain: AuditChain, entries: NewEntry[]): string | undefined {
    return entries.length ? appendStatement(chain.id, entries.map(sanitizeIfRefused)) : undefined;
  }

  /**
   * In a transaction of their own (a failure's entry, a read's entries): one statement. When
   * PostgreSQL rejects it anyway (a value over one of its limits), the entries are appended once
   * more, every one sanitized (control characters escaped, long strings cut, flagged); only when
   * that fails too does this throw.
   */
  @OutsideTransaction()
  async appendAlone(chain: AuditChain, entries: NewEntry[]): Promise<void> {
    if (!entries.length) return;
    try {
      await chain.pool().query(this.appendStatement(chain, entries)!);
    } catch {
      await chain.pool().query(appendStatement(chain.id, entries.map(sanitizeEntry)));
    }
  }

  /** Newest first. Paging by sequence number stays stable while entries are appended. */
  async list(chain: AuditChain, query: AuditQuery): Promise<ChainedEntry[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, value: unknown) => {
      params.push(value);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (query.action) add('action = ?', query.action);
    if (query.actor) add(`(actor->>'id' = ? OR actor->>'userId' = $${params.length + 1} OR actor->>'apiKeyId' = $${params.length + 1})`, query.actor);
    if (query.outcome) add('outcome = ?', query.outcome);
    if (query.from) add('occurred_at >= ?', query.from);
    if (query.to) add('occurred_at < ?', query.to);
    if (query.before !== undefined) add('seq < ?', query.before);
    params.push(query.limit);
    const { rows } = await chain
      .pool()
      .query<AuditRow>(
        `SELECT * FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT $${params.length}`,
        params,
      );
    return rows.map(fromRow);
  }

  /** The whole chain in sequence order (or from entry `from` on), a page at a time, without holding it in memory. */
  async *scan(chain: AuditChain, pageSize = 1000, from = 1): AsyncGenerator<ChainedEntry> {
    let after = from - 1;
    for (;;) {
      const { rows } = await chain
        .pool()
        .query<AuditRow>('SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2', [after, pageSize]);
      for (const row of rows) yield fromRow(row);
      if (rows.length < pageSize) return;
      after = Number(rows[rows.length - 1].seq);
    }
  }

  async checkpoints(chain: AuditChain): Promise<Checkpoint[]> {
    const { rows } = await chain
      .pool()
      .query<{ seq: string; hash: Buffer; key_name: string; signature: string; created_at: Date }>(
        'SELECT * FROM audit_checkpoints ORDER BY seq',
      );
    return rows.map((r) => ({ seq: Number(r.seq), hash: r.hash, keyName: r.key_name, signature: r.signature, createdAt: r.created_at }));
  }

  async lastCheckpoint(chain: AuditChain): Promise<number> {
    const { rows } = await chain.pool().query<{ seq: string | null }>('SELECT max(seq) AS seq FROM audit_checkpoints');
    return Number(rows[0].seq ?? 0);
  }

  async head(chain: AuditChain): Promise<{ seq: number; hash: Buffer } | undefined> {
    const { rows } = await chain.pool().query<{ seq: string; hash: Buffer }>('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1');
    return rows[0] && { seq: Number(rows[0].seq), hash: rows[0].hash };
  }

  async insertCheckpoint(chain: AuditChain, checkpoint: Omit<Checkpoint, 'createdAt'>, client?: ClientBase): Promise<void> {
    await (client ?? chain.pool()).query(
      'INSERT INTO audit_checkpoints (seq, hash, key_name, signature) VALUES ($1, $2, $3, $4) ON CONFLICT (seq) DO NOTHING',
      [checkpoint.seq, checkpoint.hash, checkpoint.keyName, checkpoint.signature],
    );
  }
}

export interface Checkpoint {
  seq: number;
  hash: Buffer;
  keyName: string;
  signature: string;
  createdAt: Date;
}
