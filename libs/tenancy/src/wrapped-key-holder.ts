import { SetMetadata } from '@nestjs/common';
import type { Pool } from 'pg';
import { DatabaseService, OutsideTransaction } from '@coffer/database';
import { wrappedKeyVersion, wrappedKeyVersionSql } from '@coffer/kms';
import type { OrgRef } from './org';

/** One stored wrapped data key: the row holding it and the value it holds now. */
export interface WrappedKeyRow {
  rowId: string;
  wrapped: string;
}

/**
 * A column of an org database that stores data keys wrapped by the org's KMS key
 * (`<kind>:v<N>:<base64>`). The library that owns the table declares it (a `WrappedKeyColumn`
 * provider marked `@HoldsWrappedKeys()`); libs/keys finds every holder and is the only caller
 * (counts, rewrap, and whatever else the org key's lifecycle needs).
 */
export interface WrappedKeyHolder {
  /** `table.column`: names the holder, unique among holders, and orders the rewrap's walk. */
  readonly wrappedKeyColumn: string;
  /**
   * How many values each key version wraps, in the caller's unit of work. A value in another
   * form (sealed to the spool key, `spool:...`) is not KMS-wrapped and is not counted.
   */
  countWrappedKeysByVersion(org: OrgRef): Promise<Map<number, number>>;
  /** Up to `limit` values wrapped under a version older than `version` (in the caller's unit of work). */
  wrappedKeysOlderThan(org: OrgRef, version: number, limit: number): Promise<WrappedKeyRow[]>;
  /**
   * Compare-and-swap, committed on its own (`@OutsideTransaction()`): stores `rewrapped` (and
   * its version in the table's version column, if it has one) only if the row still holds
   * `key.wrapped`, so a concurrent writer's new key is never overwritten. Returns whether it did.
   */
  replaceWrappedKey(org: OrgRef, key: WrappedKeyRow, rewrapped: string): Promise<boolean>;
}

export const WRAPPED_KEY_HOLDER = 'coffer:wrapped-key-holder';

/** Marks a provider as a WrappedKeyHolder: libs/keys discovers it in whichever app loads its module. */
export const HoldsWrappedKeys = () => SetMetadata(WRAPPED_KEY_HOLDER, true);

/** Where a column's wrapped keys live: the table, its row key, and its key-version column if it has one. */
export interface WrappedKeyColumnSpec {
  table: string;
  column: string;
  rowId: string;
  versionColumn?: string;
}

/**
 * The holder of one column, from its declaration: the owning library extends it with its own
 * table's spec, so every column is counted, listed and swapped by the same statements.
 */
export abstract class WrappedKeyColumn implements WrappedKeyHolder {
  readonly wrappedKeyColumn: string;
  private readonly version: string;

  protected constructor(
    private readonly db: DatabaseService,
    private readonly spec: WrappedKeyColumnSpec,
  ) {
    this.wrappedKeyColumn = `${spec.table}.${spec.column}`;
    this.version = wrappedKeyVersionSql(spec.column);
  }

  async countWrappedKeysByVersion(org: OrgRef): Promise<Map<number, number>> {
    const { rows } = await this.pool(org).query<{ version: number; count: string }>(
      `SELECT ${this.version} AS version, count(*) FROM ${this.spec.table} WHERE ${this.version} IS NOT NULL GROUP BY 1`,
    );
    return new Map(rows.map((r) => [r.version, Number(r.count)]));
  }

  async wrappedKeysOlderThan(org: OrgRef, version: number, limit: number): Promise<WrappedKeyRow[]> {
    const { table, column, rowId } = this.spec;
    const { rows } = await this.pool(org).query<WrappedKeyRow>(
      `SELECT ${rowId}::text AS "rowId", ${column} AS wrapped FROM ${table} WHERE ${this.version} < $1 LIMIT $2`,
      [version, limit],
    );
    return rows;
  }

  @OutsideTransaction()
  async replaceWrappedKey(org: OrgRef, key: WrappedKeyRow, rewrapped: string): Promise<boolean> {
    const { table, column, rowId, versionColumn } = this.spec;
    const setVersion = versionColumn ? `, ${versionColumn} = $4` : '';
    const params = [rewrapped, key.rowId, key.wrapped, ...(versionColumn ? [wrappedKeyVersion(rewrapped)] : [])];
    const { rowCount } = await this.pool(org).query(
      `UPDATE ${table} SET ${column} = $1${setVersion} WHERE ${rowId}::text = $2 AND ${column} = $3`,
      params,
    );
    return rowCount === 1;
  }

  private pool(org: OrgRef): Pool {
    return this.db.org(org.databaseName, org.databaseServer);
  }
}
