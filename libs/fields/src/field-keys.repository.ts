import { Injectable } from '@nestjs/common';
import type { ClientBase } from 'pg';
import { DatabaseService } from '@coffer/database';
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
    return listFieldKeys(this.db.org(org.databaseName, org.databaseServer));
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
