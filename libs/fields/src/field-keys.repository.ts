import { Injectable } from '@nestjs/common';
import type { ClientBase, Pool } from 'pg';
import { DatabaseService } from '@coffer/database';
import { HoldsWrappedKeys, WrappedKeyColumn } from '@coffer/tenancy';
import type { OrgRef } from '@coffer/tenancy';

export type FieldKeyPurpose = 'field' | 'index';

export interface WrappedFieldKey {
  id: number;
  purpose: FieldKeyPurpose;
  wrapped: string;
}

/** The `field_keys` table of an org database: read by the app role, written by the owner. */
@Injectable()
export class FieldKeysRepository {
  constructor(private readonly db: DatabaseService) {}

  async list(org: OrgRef): Promise<WrappedFieldKey[]> {
    return listFieldKeys(this.pool(org));
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

/** The field and index keys' wrapping: the rewrap (libs/keys) may only swap it, through this holder. */
@Injectable()
@HoldsWrappedKeys()
export class FieldKeyWrappings extends WrappedKeyColumn {
  constructor(db: DatabaseService) {
    super(db, { table: 'field_keys', column: 'wrapped', rowId: 'id', versionColumn: 'kms_key_version' });
  }
}
