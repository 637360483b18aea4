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

  /** Revokes one link (by its id) until it would have expired anyway; false if it already was. */
  async revokeLink(org: OrgRef, id: string, expiresAt: Date): Promise<boolean> {
    const { rowCount } = await this.db
      .org(org.databaseName, org.databaseServer)
      .query('INSERT INTO revoked_asset_links (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING', [id, expiresAt]);
    return rowCount === 1;
  }

  /**
   * Why a link may no longer be used, besides its key and expiry: revoked by itself, or its
   * creator disabled, or the key they made it with revoked or expired. undefined: usable.
   */
  async linkRefusal(org: OrgRef, linkId: string, creator: { userId: string; apiKeyId: string } | undefined): Promise<string | undefined> {
    const { rows } = await this.db.org(org.databaseName, org.databaseServer).query<{ revoked: boolean; creator_ok: boolean | null }>(
      `SELECT EXISTS (SELECT 1 FROM revoked_asset_links WHERE id = $1) AS revoked,
              (SELECT u.disabled_at IS NULL AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
               FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = $2 AND u.id = $3) AS creator_ok`,
      [linkId, creator?.apiKeyId ?? null, creator?.userId ?? null],
    );
    if (rows[0].revoked) return 'the link was revoked';
    if (creator && rows[0].creator_ok !== true) return "the link's creator no longer has access";
    return undefined;
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
