import { Injectable } from '@nestjs/common';
import type { ClientBase, Pool } from 'pg';
import { DatabaseService, OutsideTransaction } from '@coffer/database';
import { wrappedKeyVersion, wrappedKeyVersionSql } from '@coffer/kms';
import { HoldsWrappedKeys } from '@coffer/tenancy';
import type { OrgRef, WrappedKeyHolder, WrappedKeyRow } from '@coffer/tenancy';

export type FieldKeyPurpose = 'field' | 'index';

export interface WrappedFieldKey {
  id: number;
  purpose: FieldKeyPurpose;
  wrapped: string;
}

const VERSION = wrappedKeyVersionSql('wrapped');

/**
 * The `field_keys` table of an org database: read by the app role, written by the owner; the
 * rewrap (libs/keys) may only swap a key's wrapping, through this holder.
 */
@Injectable()
@HoldsWrappedKeys()
export class FieldKeysRepository implements WrappedKeyHolder {
  readonly wrappedKeyColumn = 'field_keys.wrapped';

  constructor(private readonly db: DatabaseService) {}

  async list(org: OrgRef): Promise<WrappedFieldKey[]> {
    return listFieldKeys(this.pool(org));
  }

  async countWrappedKeysByVersion(org: OrgRef): Promise<Map<number, number>> {
    const { rows } = await this.pool(org).query<{ version: number; count: string }>(
      `SELECT ${VERSION} AS version, count(*) FROM field_keys WHERE ${VERSION} IS NOT NULL GROUP BY 1`,
    );
    return new Map(rows.map((r) => [r.version, Number(r.count)]));
  }

  async wrappedKeysOlderThan(org: OrgRef, version: number, limit: number): Promise<WrappedKeyRow[]> {
    const { rows } = await this.pool(org).query<WrappedKeyRow>(
      `SELECT id::text AS "rowId", wrapped FROM field_keys WHERE ${VERSION} < $1 LIMIT $2`,
      [version, limit],
    );
    return rows;
  }

  @OutsideTransaction()
  async replaceWrappedKey(org: OrgRef, key: WrappedKeyRow, rewrapped: string): Promise<boolean> {
    const { rowCount } = await this.pool(org).query(
      `UPDATE field_keys SET wrapped = $1, kms_key_version = $4 WHERE id::text = $2 AND wrapped = $3`,
      [rewrapped, key.rowId, key.wrapped, wrappedKeyVersion(rewrapped)],
    );
    return rowCount === 1;
  }

  private pool(org: OrgRef): Pool {
    return this.db.org(org.databaseName, org.databaseServer);
  }
}

export async function listFieldKeys(db: Pick<ClientBase, 'query'>): Promise<WrappedFieldKey[]> {
  const { rows } = await db.query<WrappedFieldKey>('SELECT id, purpose, wrapped FROM field_keys ORDER BY id');
  return rows;
}

/** Adds a key with the next id. Runs as the owner, under the org database's migration lock. */
export async function insertFieldKey(owner: ClientBase, key: { purpose: FieldKeyPurpose; wrapped: string; kmsKeyVersion: number }) {
  await owner.query(
    `INSERT INTO field_keys (id, purpose, wrapped, kms_key_version)
     SELECT coalesce(max(id), 0) + 1, $1, $2, $3 FROM field_keys`,
    [key.purpose, key.wrapped, key.kmsKeyVersion],
  );
}
