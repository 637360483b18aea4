import { Injectable } from '@nestjs/common';
import type { Pool } from 'pg';
import { DatabaseService, OutsideTransaction } from '@coffer/database';
import { wrappedKeyVersionSql } from '@coffer/kms';
import { HoldsWrappedKeys } from '@coffer/tenancy';
import type { OrgRef, WrappedKeyHolder, WrappedKeyRow } from '@coffer/tenancy';

const VERSION = wrappedKeyVersionSql('credentials_key');

/**
 * The data key sealing the delivery destination's credentials (`audit_destination`, one row),
 * wrapped by the org's KMS key: counted and rewrapped by libs/keys through this holder.
 */
@Injectable()
@HoldsWrappedKeys()
export class AuditDestinationKeys implements WrappedKeyHolder {
  readonly wrappedKeyColumn = 'audit_destination.credentials_key';

  constructor(private readonly db: DatabaseService) {}

  async countWrappedKeysByVersion(org: OrgRef): Promise<Map<number, number>> {
    const { rows } = await this.pool(org).query<{ version: number; count: string }>(
      `SELECT ${VERSION} AS version, count(*) FROM audit_destination WHERE ${VERSION} IS NOT NULL GROUP BY 1`,
    );
    return new Map(rows.map((r) => [r.version, Number(r.count)]));
  }

  async wrappedKeysOlderThan(org: OrgRef, version: number, limit: number): Promise<WrappedKeyRow[]> {
    const { rows } = await this.pool(org).query<WrappedKeyRow>(
      `SELECT singleton::text AS "rowId", credentials_key AS wrapped FROM audit_destination WHERE ${VERSION} < $1 LIMIT $2`,
      [version, limit],
    );
    return rows;
  }

  /** The table has no version column: only the value is swapped. */
  @OutsideTransaction()
  async replaceWrappedKey(org: OrgRef, key: WrappedKeyRow, rewrapped: string): Promise<boolean> {
    const { rowCount } = await this.pool(org).query(
      `UPDATE audit_destination SET credentials_key = $1 WHERE singleton::text = $2 AND credentials_key = $3`,
      [rewrapped, key.rowId, key.wrapped],
    );
    return rowCount === 1;
  }

  private pool(org: OrgRef): Pool {
    return this.db.org(org.databaseName, org.databaseServer);
  }
}
