import { Injectable } from '@nestjs/common';
import { DatabaseService } from '@coffer/database';
import type { OrgRef } from '@coffer/tenancy';

export interface LinkKey {
  id: string;
  wrappedKey: string;
  revokedAt: Date | null;
}

@Injectable()
export class LinkKeysRepository {
  constructor(private readonly db: DatabaseService) {}

  async current(org: OrgRef): Promise<LinkKey | undefined> {
    const { rows } = await this.db.org(org.databaseName, org.databaseServer).query('SELECT * FROM link_keys WHERE revoked_at IS NULL');
    return rows[0] && toKey(rows[0]);
  }

  async byId(org: OrgRef, id: string): Promise<LinkKey | undefined> {
    const { rows } = await this.db.org(org.databaseName, org.databaseServer).query('SELECT * FROM link_keys WHERE id = $1', [id]);
    return rows[0] && toKey(rows[0]);
  }

  /** Adds a current key unless another request just did; answers the current one either way. */
  async add(org: OrgRef, key: { id: string; wrappedKey: string; kmsKeyVersion: number }): Promise<LinkKey> {
    const pool = this.db.org(org.databaseName, org.databaseServer);
    await pool.query(
      `INSERT INTO link_keys (id, wrapped_key, kms_key_version) VALUES ($1, $2, $3) ON CONFLICT ((true)) WHERE revoked_at IS NULL DO NOTHING`,
      [key.id, key.wrappedKey, key.kmsKeyVersion],
    );
    return (await this.current(org))!;
  }

  async revokeAll(org: OrgRef): Promise<number> {
    const { rowCount } = await this.db
      .org(org.databaseName, org.databaseServer)
      .query('UPDATE link_keys SET revoked_at = now() WHERE revoked_at IS NULL');
    return rowCount ?? 0;
  }
}

function toKey(row: { id: string; wrapped_key: string; revoked_at: Date | null }): LinkKey {
  return { id: row.id, wrappedKey: row.wrapped_key, revokedAt: row.revoked_at };
}
