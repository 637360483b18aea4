import { Injectable } from '@nestjs/common';
import { DatabaseService, OutsideTransaction } from '@coffer/database';
import { orgKeyName } from '@coffer/kms';

export interface OrgKeyState {
  orgId: string;
  keyName: string;
  latestVersion: number;
  lastRotatedAt: Date | null;
  nextRotationAt: Date;
  rewrapRemaining: number;
  rewrapCompletedAt: Date | null;
  minDecryptionVersion: number;
}

/**
 * The org key's schedule and state (control plane, `org_keys`). The wrapped data keys stored in
 * org databases are their owners' (WrappedKeys).
 */
@Injectable()
export class KeyRotationRepository {
  constructor(private readonly db: DatabaseService) {}

  /** Gives every active org without a schedule one: first rotation a period after it was provisioned. */
  async scheduleUnscheduled(periodDays: number): Promise<number> {
    const { rows } = await this.db.control.query<{ id: string; provisioned_at: Date | null }>(
      `SELECT id, provisioned_at FROM organizations o
       WHERE status = 'active' AND NOT EXISTS (SELECT 1 FROM org_keys k WHERE k.org_id = o.id)`,
    );
    for (const row of rows) await this.ensureScheduled(row.id, periodDays, row.provisioned_at ?? new Date());
    return rows.length;
  }

  async ensureScheduled(orgId: string, periodDays: number, from = new Date()): Promise<void> {
    await this.db.control.query(
      `INSERT INTO org_keys (org_id, key_name, next_rotation_at) VALUES ($1, $2, $3::timestamptz + make_interval(days => $4))
       ON CONFLICT (org_id) DO NOTHING`,
      [orgId, orgKeyName(orgId), from, periodDays],
    );
  }

  /** Active orgs whose key is due for rotation. */
  async due(now: Date): Promise<OrgKeyState[]> {
    return this.active('k.next_rotation_at <= $1', [now]);
  }

  /**
   * Active orgs with a rewrap to (re)run: one never completed (a rotation's, or one a crash cut
   * short), or, when old versions are retired, one whose rotation is at least `graceMs` old and
   * whose older versions still decrypt (a write that took its data key before the rotation has
   * landed by then, and the last pass moves it before the versions are retired).
   */
  async rewrapDue(now: Date, retire: boolean, graceMs: number): Promise<OrgKeyState[]> {
    return this.active(
      `k.rewrap_completed_at IS NULL OR ($1 AND k.min_decryption_version < k.latest_version AND k.last_rotated_at <= $2)`,
      [retire, new Date(now.getTime() - graceMs)],
    );
  }

  private async active(where: string, params: unknown[]): Promise<OrgKeyState[]> {
    const { rows } = await this.db.control.query(
      `SELECT k.* FROM org_keys k JOIN organizations o ON o.id = k.org_id WHERE o.status = 'active' AND (${where}) ORDER BY k.next_rotation_at`,
      params,
    );
    return rows.map(toState);
  }

  async state(orgId: string): Promise<OrgKeyState | undefined> {
    const { rows } = await this.db.control.query('SELECT * FROM org_keys WHERE org_id = $1', [orgId]);
    return rows[0] && toState(rows[0]);
  }

  /** Inside the unit of work: holds the org's schedule row until commit, so rotations queue. */
  async lock(orgId: string): Promise<OrgKeyState> {
    const { rows } = await this.db.control.query('SELECT * FROM org_keys WHERE org_id = $1 FOR UPDATE', [orgId]);
    return toState(rows[0]);
  }

  async recordRotation(orgId: string, version: number, rotatedAt: Date, periodDays: number): Promise<void> {
    await this.db.control.query(
      `UPDATE org_keys SET latest_version = $2, last_rotated_at = $3, next_rotation_at = $3::timestamptz + make_interval(days => $4),
         rewrap_completed_at = NULL WHERE org_id = $1`,
      [orgId, version, rotatedAt, periodDays],
    );
  }

  /** Progress, committed on its own so that it shows while the job runs and survives a crash. */
  @OutsideTransaction()
  async recordRewrapProgress(orgId: string, remaining: number): Promise<void> {
    await this.db.control.query(
      `UPDATE org_keys SET rewrap_remaining = $2,
         rewrap_completed_at = CASE WHEN $2 = 0 THEN coalesce(rewrap_completed_at, now()) END WHERE org_id = $1`,
      [orgId, remaining],
    );
  }

  async recordRetired(orgId: string, minDecryptionVersion: number): Promise<void> {
    await this.db.control.query('UPDATE org_keys SET min_decryption_version = $2 WHERE org_id = $1', [orgId, minDecryptionVersion]);
  }
}

function toState(row: Record<string, any>): OrgKeyState {
  return {
    orgId: row.org_id,
    keyName: row.key_name,
    latestVersion: row.latest_version,
    lastRotatedAt: row.last_rotated_at,
    nextRotationAt: row.next_rotation_at,
    rewrapRemaining: row.rewrap_remaining,
    rewrapCompletedAt: row.rewrap_completed_at,
    minDecryptionVersion: row.min_decryption_version,
  };
}
