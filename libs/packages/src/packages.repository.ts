import { Injectable } from '@nestjs/common';
import type { Pool } from 'pg';
import { DatabaseService, OutsideTransaction } from '@coffer/database';
import type { WrappedKey } from '@coffer/kms';
import type { OrgRef } from '@coffer/tenancy';
import { PackageSummary, PackageVersion, StoredVersion } from './package';

interface VersionRow {
  id: string;
  package_name: string;
  version: number;
  size: string;
  sha256: Buffer;
  content_type: string;
  kms_key_version: number;
  created_by: string;
  created_at: Date;
  wrapped_dek: string;
  manifest_key: string;
}

export interface UploadResult {
  size: number;
  sha256: Buffer;
}

export interface NewUpload {
  id: string;
  name: string;
  contentType: string;
  wrappedDek: string;
  kmsKeyVersion: number;
  manifestKey: string;
  createdBy: string;
}

@Injectable()
export class PackagesRepository {
  constructor(private readonly db: DatabaseService) {}

  private pool(org: OrgRef): Pool {
    return this.db.org(org.databaseName, org.databaseServer);
  }

  /**
   * Upload bookkeeping (startUpload, touchUpload, abandonUpload) commits on its own, outside the
   * request's transaction: the row of an upload that dies half-way (a crash included) must
   * survive so the sweep finds its chunks.
   */
  @OutsideTransaction()
  async startUpload(org: OrgRef, upload: NewUpload): Promise<void> {
    await this.pool(org).query(
      `INSERT INTO package_versions (id, package_name, state, content_type, wrapped_dek, kms_key_version, manifest_key, created_by)
       VALUES ($1, $2, 'uploading', $3, $4, $5, $6, $7)`,
      [upload.id, upload.name, upload.contentType, upload.wrappedDek, upload.kmsKeyVersion, upload.manifestKey, upload.createdBy],
    );
  }

  /** Tells the sweep the upload is alive. */
  @OutsideTransaction()
  async touchUpload(org: OrgRef, id: string): Promise<void> {
    await this.pool(org).query(`UPDATE package_versions SET updated_at = now() WHERE id = $1 AND state = 'uploading'`, [id]);
  }

  /**
   * A failed upload: never visible; the sweep removes its chunks. Also after the sweep claimed
   * it as stale (its writer was merely slow): chunks written since then need another sweep.
   */
  @OutsideTransaction()
  async abandonUpload(org: OrgRef, id: string): Promise<void> {
    await this.pool(org).query(
      `UPDATE package_versions SET state = 'deleted', deleted_at = coalesce(deleted_at, now()), purged_at = NULL, updated_at = now()
       WHERE id = $1 AND (state = 'uploading' OR (state = 'deleted' AND version IS NULL))`,
      [id],
    );
  }

  /**
   * Makes the upload a version, in the request's transaction (with its audit entry): the
   * package is created on its first version, and numbers come from its row, which this locks
   * until commit, so concurrent uploads of one name get consecutive numbers.
   */
  async commitUpload(org: OrgRef, id: string, result: UploadResult, packageId: string): Promise<PackageVersion | undefined> {
    return this.commitVersion(org, { id, state: 'uploading' }, packageId, { size: result.size, sha256: result.sha256 });
  }

  /**
   * Queues the upload (its DEK is sealed to the spool key, libs/spool), in the request's
   * transaction: stored in full but without a number, invisible until the flush commits it.
   */
  async markPending(org: OrgRef, id: string, result: UploadResult): Promise<PackageVersion | undefined> {
    const { rows } = await this.pool(org).query<VersionRow>(
      `UPDATE package_versions SET state = 'pending', size = $2, sha256 = $3, updated_at = now()
       WHERE id = $1 AND state = 'uploading' RETURNING *`,
      [id, result.size, result.sha256],
    );
    return rows[0] && toVersion(rows[0]);
  }

  /**
   * Whether uploads of `name` wait in the spool: a new one queues behind them, to keep their
   * order. Outside the request's transaction, which must not stay open while the body streams.
   */
  @OutsideTransaction()
  async hasPending(org: OrgRef, name: string): Promise<boolean> {
    const { rows } = await this.pool(org).query(`SELECT 1 FROM package_versions WHERE package_name = $1 AND state = 'pending' LIMIT 1`, [name]);
    return rows.length > 0;
  }

  async pendingVersion(org: OrgRef, id: string): Promise<{ id: string; wrappedDek: string } | undefined> {
    const { rows } = await this.pool(org).query<{ id: string; wrapped_dek: string }>(
      `SELECT id, wrapped_dek FROM package_versions WHERE id = $1 AND state = 'pending'`,
      [id],
    );
    return rows[0] && { id: rows[0].id, wrappedDek: rows[0].wrapped_dek };
  }

  /**
   * The flush of a queued version, in the caller's transaction: the spool-sealed DEK (`sealed`,
   * still the row's) is swapped for its KMS wrapping and the version gets the next number.
   */
  async commitPending(org: OrgRef, id: string, sealed: string, wrapped: WrappedKey, packageId: string): Promise<PackageVersion | undefined> {
    return this.commitVersion(org, { id, state: 'pending', wrappedDek: sealed }, packageId, {
      wrapped_dek: wrapped.wrapped,
      kms_key_version: wrapped.keyVersion,
    });
  }

  /** A queued version whose DEK does not authenticate: never visible; the sweep removes its chunks. */
  async abandonPending(org: OrgRef, id: string): Promise<void> {
    await this.pool(org).query(
      `UPDATE package_versions SET state = 'deleted', deleted_at = now(), updated_at = now() WHERE id = $1 AND state = 'pending'`,
      [id],
    );
  }

  private async commitVersion(
    org: OrgRef,
    from: { id: string; state: 'uploading' | 'pending'; wrappedDek?: string },
    packageId: string,
    set: Record<'size' | 'sha256', unknown> | Record<'wrapped_dek' | 'kms_key_version', unknown>,
  ): Promise<PackageVersion | undefined> {
    const pool = this.pool(org);
    const { rows: pending } = await pool.query<{ package_name: string; created_by: string }>(
      `SELECT package_name, created_by FROM package_versions
       WHERE id = $1 AND state = $2 AND ($3::text IS NULL OR wrapped_dek = $3) FOR UPDATE`,
      [from.id, from.state, from.wrappedDek ?? null],
    );
    if (!pending[0]) return undefined;
    const { rows: pkg } = await pool.query<{ id: string; last_version: number }>(
      `INSERT INTO packages (id, name, created_by, last_version) VALUES ($1, $2, $3, 1)
       ON CONFLICT (name) WHERE deleted_at IS NULL DO UPDATE SET last_version = packages.last_version + 1
       RETURNING id, last_version`,
      [packageId, pending[0].package_name, pending[0].created_by],
    );
    const columns = Object.keys(set);
    const { rows } = await pool.query<VersionRow>(
      `UPDATE package_versions SET state = 'committed', package_id = $2, version = $3,
         ${columns.map((c, i) => `${c} = $${i + 4}`).join(', ')}, committed_at = now(), updated_at = now()
       WHERE id = $1 RETURNING *`,
      [from.id, pkg[0].id, pkg[0].last_version, ...Object.values(set)],
    );
    return toVersion(rows[0]);
  }

  /** A version by id whatever its state: what a queued write became. */
  async versionById(org: OrgRef, id: string): Promise<{ package: string; version: number | null; state: string } | undefined> {
    const { rows } = await this.pool(org).query(`SELECT package_name AS package, version, state FROM package_versions WHERE id = $1`, [id]);
    return rows[0];
  }

  async list(org: OrgRef): Promise<PackageSummary[]> {
    const { rows } = await this.pool(org).query(
      `SELECT p.name, p.created_by, p.created_at, max(v.version) AS latest, count(v.id)::int AS versions
       FROM packages p JOIN package_versions v ON v.package_id = p.id AND v.state = 'committed'
       WHERE p.deleted_at IS NULL GROUP BY p.id ORDER BY p.name`,
    );
    return rows.map((r) => ({ name: r.name, latestVersion: r.latest, versions: r.versions, createdBy: r.created_by, createdAt: r.created_at }));
  }

  async versions(org: OrgRef, name: string): Promise<PackageVersion[]> {
    const { rows } = await this.pool(org).query<VersionRow>(
      `SELECT v.* FROM package_versions v JOIN packages p ON p.id = v.package_id
       WHERE p.name = $1 AND p.deleted_at IS NULL AND v.state = 'committed' ORDER BY v.version`,
      [name],
    );
    return rows.map(toVersion);
  }

  async version(org: OrgRef, name: string, version: number): Promise<StoredVersion | undefined> {
    const { rows } = await this.pool(org).query<VersionRow>(
      `SELECT v.* FROM package_versions v JOIN packages p ON p.id = v.package_id
       WHERE p.name = $1 AND p.deleted_at IS NULL AND v.version = $2 AND v.state = 'committed'`,
      [name, version],
    );
    return rows[0] && { ...toVersion(rows[0]), wrappedDek: rows[0].wrapped_dek, manifestKey: rows[0].manifest_key };
  }

  async deleteVersion(org: OrgRef, name: string, version: number): Promise<PackageVersion | undefined> {
    const { rows } = await this.pool(org).query<VersionRow>(
      `UPDATE package_versions v SET state = 'deleted', deleted_at = now(), updated_at = now()
       FROM packages p WHERE p.id = v.package_id AND p.name = $1 AND p.deleted_at IS NULL AND v.version = $2 AND v.state = 'committed'
       RETURNING v.*`,
      [name, version],
    );
    return rows[0] && toVersion(rows[0]);
  }

  /** Deletes the package and every version; the name can then start again at version 1. */
  async deletePackage(org: OrgRef, name: string): Promise<number | undefined> {
    const pool = this.pool(org);
    const { rows } = await pool.query<{ id: string }>(
      `UPDATE packages SET deleted_at = now() WHERE name = $1 AND deleted_at IS NULL RETURNING id`,
      [name],
    );
    if (!rows[0]) return undefined;
    const deleted = await pool.query(
      `UPDATE package_versions SET state = 'deleted', deleted_at = now(), updated_at = now() WHERE package_id = $1 AND state = 'committed'`,
      [rows[0].id],
    );
    return deleted.rowCount ?? 0;
  }

  /** Versions whose objects are to be removed: deleted ones, and uploads idle since `staleBefore`. */
  async sweepable(org: OrgRef, staleBefore: Date, limit: number): Promise<{ id: string; state: string }[]> {
    const { rows } = await this.pool(org).query(
      `SELECT id, state FROM package_versions
       WHERE (state = 'uploading' AND updated_at < $1) OR (state = 'deleted' AND purged_at IS NULL)
       ORDER BY updated_at LIMIT $2`,
      [staleBefore, limit],
    );
    return rows;
  }

  /** Takes a stale upload from whoever was writing it: its commit will now find nothing to commit. */
  async claimStaleUpload(org: OrgRef, id: string, staleBefore: Date): Promise<boolean> {
    const { rowCount } = await this.pool(org).query(
      `UPDATE package_versions SET state = 'deleted', deleted_at = now() WHERE id = $1 AND state = 'uploading' AND updated_at < $2`,
      [id, staleBefore],
    );
    return rowCount === 1;
  }

  async markPurged(org: OrgRef, id: string): Promise<void> {
    await this.pool(org).query(`UPDATE package_versions SET purged_at = now() WHERE id = $1 AND state = 'deleted'`, [id]);
  }
}

function toVersion(row: VersionRow): PackageVersion {
  return {
    id: row.id,
    package: row.package_name,
    version: row.version,
    size: Number(row.size),
    sha256: row.sha256.toString('hex'),
    contentType: row.content_type,
    kmsKeyVersion: row.kms_key_version,
    createdBy: row.created_by,
    createdAt: row.created_at,
  };
}
