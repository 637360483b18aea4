import { Injectable } from '@nestjs/common';
import type { ClientBase, Pool } from 'pg';
import { DatabaseService, OutsideTransaction } from '@coffer/database';
import { HoldsWrappedKeys, WrappedKeyColumn } from '@coffer/tenancy';
import type { OrgRef } from '@coffer/tenancy';

export type PendingWriteKind = 'package.version';
export type PendingWriteStatus = 'pending' | 'flushed' | 'failed';

export interface PendingWrite {
  id: string;
  seq: number;
  kind: PendingWriteKind;
  /** What the write makes visible when flushed (a package version's id). */
  target: string;
  status: PendingWriteStatus;
  createdBy: string;
  createdAt: Date;
  flushedAt: Date | null;
  attempts: number;
  lastError: string | null;
}

export interface SpoolKeyRow {
  id: string;
  wrappedKey: string;
  publicKey: Buffer;
}

const COLUMNS = `id, seq, kind, target, status, created_by AS "createdBy", created_at AS "createdAt",
  flushed_at AS "flushedAt", attempts, last_error AS "lastError"`;

/** `spool_keys` (read; the owner writes it at provisioning) and `pending_writes` of an org database. */
@Injectable()
export class SpoolRepository {
  constructor(private readonly db: DatabaseService) {}

  private pool(org: OrgRef): Pool {
    return this.db.org(org.databaseName, org.databaseServer);
  }

  /** Read outside any unit of work: an upload must not open its transaction before its body is in. */
  @OutsideTransaction()
  async key(org: OrgRef): Promise<SpoolKeyRow | undefined> {
    return spoolKeyOf(this.pool(org));
  }

  /** Queues a write, in the caller's unit of work (the request that accepted it). */
  async add(org: OrgRef, write: { id: string; kind: PendingWriteKind; target: string; createdBy: string }): Promise<PendingWrite> {
    const { rows } = await this.pool(org).query(
      `INSERT INTO pending_writes (id, kind, target, created_by) VALUES ($1, $2, $3, $4) RETURNING ${COLUMNS}`,
      [write.id, write.kind, write.target, write.createdBy],
    );
    return toWrite(rows[0]);
  }

  async get(org: OrgRef, id: string): Promise<PendingWrite | undefined> {
    const { rows } = await this.pool(org).query(`SELECT ${COLUMNS} FROM pending_writes WHERE id = $1`, [id]);
    return rows[0] && toWrite(rows[0]);
  }

  /** The oldest pending writes after `afterSeq`, in the order they were accepted. */
  async due(org: OrgRef, afterSeq: number, limit: number): Promise<PendingWrite[]> {
    const { rows } = await this.pool(org).query(
      `SELECT ${COLUMNS} FROM pending_writes WHERE status = 'pending' AND seq > $1 ORDER BY seq LIMIT $2`,
      [afterSeq, limit],
    );
    return rows.map(toWrite);
  }

  async countPending(org: OrgRef): Promise<number> {
    const { rows } = await this.pool(org).query<{ n: number }>(`SELECT count(*)::int AS n FROM pending_writes WHERE status = 'pending'`);
    return rows[0].n;
  }

  /** Counts by status and the oldest pending write's age, for the encryption status. */
  async summary(org: OrgRef): Promise<{ pending: number; failed: number; oldestPendingAt: Date | null }> {
    const { rows } = await this.pool(org).query(
      `SELECT count(*) FILTER (WHERE status = 'pending')::int AS pending, count(*) FILTER (WHERE status = 'failed')::int AS failed,
         min(created_at) FILTER (WHERE status = 'pending') AS "oldestPendingAt"
       FROM pending_writes`,
    );
    return rows[0];
  }

  /**
   * Locks the write until the caller's unit of work ends, if it is still pending: of two
   * flushers, the second finds it flushed and does nothing.
   */
  async lockPending(org: OrgRef, id: string): Promise<boolean> {
    const { rows } = await this.pool(org).query(`SELECT 1 FROM pending_writes WHERE id = $1 AND status = 'pending' FOR UPDATE`, [id]);
    return rows.length === 1;
  }

  async markFlushed(org: OrgRef, id: string): Promise<void> {
    await this.pool(org).query(
      `UPDATE pending_writes SET status = 'flushed', flushed_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1`,
      [id],
    );
  }

  async markFailed(org: OrgRef, id: string, error: string): Promise<void> {
    await this.pool(org).query(`UPDATE pending_writes SET status = 'failed', attempts = attempts + 1, last_error = $2 WHERE id = $1`, [id, error]);
  }

  /** A flush attempt that did not get through (KMS gone again): committed on its own, the write stays pending. */
  @OutsideTransaction()
  async recordAttempt(org: OrgRef, id: string, error: string): Promise<void> {
    await this.pool(org).query(`UPDATE pending_writes SET attempts = attempts + 1, last_error = $2 WHERE id = $1 AND status = 'pending'`, [id, error]);
  }
}

export async function spoolKeyOf(db: Pick<ClientBase, 'query'>): Promise<SpoolKeyRow | undefined> {
  const { rows } = await db.query<SpoolKeyRow>(`SELECT id, wrapped_key AS "wrappedKey", public_key AS "publicKey" FROM spool_keys`);
  return rows[0];
}

/** Runs as the owner, under the org database's migration lock (provisioning). */
export async function insertSpoolKey(owner: ClientBase, key: { id: string; wrappedKey: string; kmsKeyVersion: number; publicKey: Buffer }) {
  await owner.query(`INSERT INTO spool_keys (id, wrapped_key, kms_key_version, public_key) VALUES ($1, $2, $3, $4)`, [
    key.id,
    key.wrappedKey,
    key.kmsKeyVersion,
    key.publicKey,
  ]);
}

function toWrite(row: PendingWrite & { seq: string | number }): PendingWrite {
  return { ...row, seq: Number(row.seq) };
}

/** The spool key's wrapping: the rewrap (libs/keys) may only swap it, through this holder. */
@Injectable()
@HoldsWrappedKeys()
export class SpoolKeyWrappings extends WrappedKeyColumn {
  constructor(db: DatabaseService) {
    super(db, { table: 'spool_keys', column: 'wrapped_key', rowId: 'id', versionColumn: 'kms_key_version' });
  }
}
