import { Injectable, Module } from '@nestjs/common';
import type { Pool } from 'pg';
import { DatabaseService, OutsideTransaction } from '@coffer/database';
import { wrappedKeyVersion, wrappedKeyVersionSql } from '@coffer/kms';
import { HoldsWrappedKeys } from '@coffer/tenancy';
import type { OrgRef, WrappedKeyHolder, WrappedKeyRow } from '@coffer/tenancy';

const DEK_VERSION = wrappedKeyVersionSql('wrapped_dek');
const LINK_KEY_VERSION = wrappedKeyVersionSql('wrapped_key');

/**
 * Each package version's content DEK (`package_versions.wrapped_dek`), wrapped by the org's KMS
 * key: counted and rewrapped by libs/keys through this holder. A DEK still sealed to the spool
 * key (`spool:...`, a queued upload) has no KMS version: neither counted nor listed until flushed.
 */
@Injectable()
@HoldsWrappedKeys()
export class PackageVersionKeys implements WrappedKeyHolder {
  readonly wrappedKeyColumn = 'package_versions.wrapped_dek';

  constructor(private readonly db: DatabaseService) {}

  async countWrappedKeysByVersion(org: OrgRef): Promise<Map<number, number>> {
    const { rows } = await pool(this.db, org).query<{ version: number; count: string }>(
      `SELECT ${DEK_VERSION} AS version, count(*) FROM package_versions WHERE ${DEK_VERSION} IS NOT NULL GROUP BY 1`,
    );
    return new Map(rows.map((r) => [r.version, Number(r.count)]));
  }

  async wrappedKeysOlderThan(org: OrgRef, version: number, limit: number): Promise<WrappedKeyRow[]> {
    const { rows } = await pool(this.db, org).query<WrappedKeyRow>(
      `SELECT id::text AS "rowId", wrapped_dek AS wrapped FROM package_versions WHERE ${DEK_VERSION} < $1 LIMIT $2`,
      [version, limit],
    );
    return rows;
  }

  @OutsideTransaction()
  async replaceWrappedKey(org: OrgRef, key: WrappedKeyRow, rewrapped: string): Promise<boolean> {
    const { rowCount } = await pool(this.db, org).query(
      `UPDATE package_versions SET wrapped_dek = $1, kms_key_version = $4 WHERE id::text = $2 AND wrapped_dek = $3`,
      [rewrapped, key.rowId, key.wrapped, wrappedKeyVersion(rewrapped)],
    );
    return rowCount === 1;
  }
}

/** The asset-link signing keys (`link_keys.wrapped_key`), wrapped by the org's KMS key. */
@Injectable()
@HoldsWrappedKeys()
export class LinkKeyWrappedKeys implements WrappedKeyHolder {
  readonly wrappedKeyColumn = 'link_keys.wrapped_key';

  constructor(private readonly db: DatabaseService) {}

  async countWrappedKeysByVersion(org: OrgRef): Promise<Map<number, number>> {
    const { rows } = await pool(this.db, org).query<{ version: number; count: string }>(
      `SELECT ${LINK_KEY_VERSION} AS version, count(*) FROM link_keys WHERE ${LINK_KEY_VERSION} IS NOT NULL GROUP BY 1`,
    );
    return new Map(rows.map((r) => [r.version, Number(r.count)]));
  }

  async wrappedKeysOlderThan(org: OrgRef, version: number, limit: number): Promise<WrappedKeyRow[]> {
    const { rows } = await pool(this.db, org).query<WrappedKeyRow>(
      `SELECT id::text AS "rowId", wrapped_key AS wrapped FROM link_keys WHERE ${LINK_KEY_VERSION} < $1 LIMIT $2`,
      [version, limit],
    );
    return rows;
  }

  @OutsideTransaction()
  async replaceWrappedKey(org: OrgRef, key: WrappedKeyRow, rewrapped: string): Promise<boolean> {
    const { rowCount } = await pool(this.db, org).query(
      `UPDATE link_keys SET wrapped_key = $1, kms_key_version = $4 WHERE id::text = $2 AND wrapped_key = $3`,
      [rewrapped, key.rowId, key.wrapped, wrappedKeyVersion(rewrapped)],
    );
    return rowCount === 1;
  }
}

function pool(db: DatabaseService, org: OrgRef): Pool {
  return db.org(org.databaseName, org.databaseServer);
}

/**
 * The holders alone (they need only the database), imported by PackagesModule and by an app that
 * reports or rotates org keys without serving packages (the CLI), so that its counts are whole.
 */
@Module({ providers: [PackageVersionKeys, LinkKeyWrappedKeys] })
export class PackageWrappedKeysModule {}
