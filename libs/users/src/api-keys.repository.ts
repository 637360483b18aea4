import { Injectable } from '@nestjs/common';
import { ClientBase, Pool } from 'pg';
import { DatabaseService } from '@coffer/database';
import { API_KEY_SECRET_HASH, FieldKeysService } from '@coffer/fields';
import type { OrgRef } from '@coffer/tenancy';
import type { Role } from '@coffer/tenancy';
import { ApiKey, ApiKeyStatus } from './user';

interface ApiKeyRow {
  id: string;
  user_id: string;
  name: string;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  expired_at: Date | null;
  /** Present where the query joins the key's user. */
  user_disabled_at?: Date | null;
}

export interface KeyCredentials {
  secretHash: Buffer;
  expiresAt: Date | null;
  revokedAt: Date | null;
  userId: string;
  role: Role;
  userDisabled: boolean;
}

const PUBLIC_COLUMNS = 'id, user_id, name, created_at, expires_at, revoked_at, expired_at';

@Injectable()
export class ApiKeysRepository {
  constructor(
    private readonly db: DatabaseService,
    private readonly fieldKeys: FieldKeysService,
  ) {}

  private pool(org: OrgRef): Pool {
    return this.db.org(org.databaseName, org.databaseServer);
  }

  /** The hash is stored sealed with the org's field codec, bound to the key's row. */
  async insert(
    db: ClientBase | Pool,
    org: OrgRef,
    key: { id: string; userId: string; name: string; secretHash: Buffer; expiresAt: Date | null },
  ): Promise<ApiKey> {
    const sealedHash = (await this.fieldKeys.codec(org)).sealBytes(key.secretHash, { ...API_KEY_SECRET_HASH, rowId: key.id });
    const { rows } = await db.query<ApiKeyRow>(
      `INSERT INTO api_keys (id, user_id, name, secret_hash, expires_at) VALUES ($1, $2, $3, $4, $5)
       RETURNING ${PUBLIC_COLUMNS}`,
      [key.id, key.userId, key.name, sealedHash, key.expiresAt],
    );
    return toApiKey(rows[0]);
  }

  /** One indexed query per authentication: the key, its user's role and state. */
  async credentials(org: OrgRef, keyId: string): Promise<KeyCredentials | undefined> {
    const codec = await this.fieldKeys.codec(org);
    const { rows } = await this.pool(org).query(
      `SELECT k.secret_hash, k.expires_at, k.revoked_at, u.id AS user_id, u.role, u.disabled_at
       FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = $1`,
      [keyId],
    );
    const row = rows[0];
    return (
      row && {
        secretHash: codec.openBytes(row.secret_hash, { ...API_KEY_SECRET_HASH, rowId: keyId }),
        expiresAt: row.expires_at,
        revokedAt: row.revoked_at,
        userId: row.user_id,
        role: row.role,
        userDisabled: row.disabled_at !== null,
      }
    );
  }

  /** Every key of the org, or of one user; a disabled user's keys say so. */
  async list(org: OrgRef, userId?: string): Promise<ApiKey[]> {
    const { rows } = await this.pool(org).query<ApiKeyRow>(
      `SELECT ${PUBLIC_COLUMNS.split(', ').map((c) => `k.${c}`).join(', ')}, u.disabled_at AS user_disabled_at
       FROM api_keys k JOIN users u ON u.id = k.user_id
       WHERE $1::text IS NULL OR k.user_id = $1 ORDER BY k.created_at, k.id`,
      [userId ?? null],
    );
    return rows.map(toApiKey);
  }

  /** Revokes the key (of `userId` only, when given); undefined if there is no such key. */
  async revoke(org: OrgRef, keyId: string, userId?: string): Promise<ApiKey | undefined> {
    const { rows } = await this.pool(org).query<ApiKeyRow>(
      `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND ($2::text IS NULL OR user_id = $2)
       RETURNING ${PUBLIC_COLUMNS}`,
      [keyId, userId ?? null],
    );
    return rows[0] && toApiKey(rows[0]);
  }

  async countDueToExpire(org: OrgRef): Promise<number> {
    const { rows } = await this.pool(org).query<{ n: number }>(
      `SELECT count(*)::int AS n FROM api_keys
       WHERE revoked_at IS NULL AND expired_at IS NULL AND expires_at IS NOT NULL AND expires_at <= now()`,
    );
    return rows[0].n;
  }

  /**
   * Marks at most `limit` keys past their expiry (the oldest expiries first); idempotent, so a
   * job run twice does no harm.
   */
  async markExpired(org: OrgRef, limit: number): Promise<string[]> {
    const { rows } = await this.pool(org).query<{ id: string }>(
      `UPDATE api_keys SET expired_at = now()
       WHERE id IN (
         SELECT id FROM api_keys
         WHERE revoked_at IS NULL AND expired_at IS NULL AND expires_at IS NOT NULL AND expires_at <= now()
         ORDER BY expires_at, id LIMIT $1 FOR UPDATE)
       RETURNING id`,
      [limit],
    );
    return rows.map((r) => r.id);
  }
}

function toApiKey(row: ApiKeyRow): ApiKey {
  return {
    id: row.id,
    userId: row.user_id,
    name: row.name,
    status: keyStatus(row, new Date()),
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
  };
}

export function keyStatus(key: { revoked_at?: Date | null; expires_at?: Date | null; user_disabled_at?: Date | null }, now: Date): ApiKeyStatus {
  if (key.revoked_at) return 'revoked';
  if (key.expires_at && key.expires_at <= now) return 'expired';
  if (key.user_disabled_at) return 'user_disabled';
  return 'active';
}
