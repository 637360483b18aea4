import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { ClientBase, Pool } from 'pg';
import { formatOrgKey, generateSecret, hashSecret, randomId, secretMatches } from '@coffer/crypto';
import { UnitOfWork } from '@coffer/database';
import { AppError } from '@coffer/http';
import type { OrgRef } from '@coffer/tenancy';
import { ApiKeysRepository, KeyCredentials } from './api-keys.repository';
import type { Role } from '@coffer/tenancy';
import { ApiKey } from './user';
import { UsersRepository } from './users.repository';

export interface VerifiedKey {
  keyId: string;
  userId: string;
  role: Role;
}

@Injectable()
export class ApiKeysService {
  /**
   * Credentials read for authentication, kept API_KEY_CACHE_TTL_MS. Revoking a key or disabling
   * a user drops them here once the revoking transaction has committed (before its response),
   * and a read begun before that drop is not cached: on this replica the first request after
   * the revoke's answer is refused. Another replica may accept the key until its copy ages out
   * (at most the TTL). The secret check, expiry and state are still evaluated on every request.
   */
  private readonly credentialCache = new Map<string, { credentials: KeyCredentials | undefined; at: number }>();
  /** Bumped by every eviction: a read that began before one may hold the old row, and is not cached. */
  private generation = 0;

  constructor(
    private readonly keys: ApiKeysRepository,
    private readonly users: UsersRepository,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** The secret is returned once and stored only as a hash. */
  async issue(org: OrgRef, userId: string, input: { name: string; expiresAt: Date | null }) {
    const user = await this.users.findById(org, userId);
    if (!user) throw new AppError('user_not_found', 'no such user in this organization');
    if (user.disabled) throw new AppError('user_disabled', 'cannot issue a key to a disabled user');
    return this.insert(this.users.pool(org), org, userId, input);
  }

  async insert(db: ClientBase | Pool, org: OrgRef, userId: string, input: { name: string; expiresAt: Date | null }) {
    const keyId = randomId();
    const secret = generateSecret();
    const apiKey = await this.keys.insert(db, org, {
      id: keyId,
      userId,
      name: input.name,
      secretHash: hashSecret(secret),
      expiresAt: input.expiresAt,
    });
    // The shape of every new key, at issuance and at org creation: the secret beside its metadata, shown once.
    return { apiKey: { ...apiKey, secret: formatOrgKey(org.id, keyId, secret) } };
  }

  /** The org's keys, or `userId`'s only. */
  list(org: OrgRef, userId?: string): Promise<ApiKey[]> {
    return this.keys.list(org, userId);
  }

  /** Revokes a key; with `userId`, only a key of that user (another's is api_key_not_found). */
  async revoke(org: OrgRef, keyId: string, userId?: string): Promise<ApiKey> {
    const key = await this.keys.revoke(org, keyId, userId);
    this.evictAfterCommit(() => this.credentialCache.delete(cacheKey(org, keyId)));
    if (!key) throw new AppError('api_key_not_found', 'no such API key in this organization');
    return key;
  }

  /** undefined for every kind of failure alike, so callers cannot tell which check failed. */
  async verify(org: OrgRef, keyId: string, secret: string, now = new Date()): Promise<VerifiedKey | undefined> {
    const key = await this.credentials(org, keyId);
    if (!key || !secretMatches(secret, key.secretHash) || !mayAct(key, now)) return undefined;
    return { keyId, userId: key.userId, role: key.role };
  }

  /** Whether the key may still act, read from the database (no cache): not revoked or expired, its user enabled. */
  async stillValid(org: OrgRef, keyId: string, now = new Date()): Promise<boolean> {
    const key = await this.keys.credentials(org, keyId);
    return !!key && mayAct(key, now);
  }

  /** Called when a user is disabled or enabled: their keys' cached credentials are read afresh. */
  forgetUser(userId: string): void {
    this.evictAfterCommit(() => {
      for (const [key, entry] of this.credentialCache) if (entry.credentials?.userId === userId) this.credentialCache.delete(key);
    });
  }

  /**
   * Evicts once the current unit of work has committed (at once outside one): evicted before
   * the commit, a concurrent request would cache the row as it still is for up to the TTL.
   */
  private evictAfterCommit(evict: () => void): void {
    const run = () => {
      this.generation++;
      evict();
    };
    const unit = UnitOfWork.current();
    if (unit) unit.afterCommit(run);
    else run();
  }

  private async credentials(org: OrgRef, keyId: string): Promise<KeyCredentials | undefined> {
    const ttl = this.config.API_KEY_CACHE_TTL_MS;
    const key = cacheKey(org, keyId);
    const hit = this.credentialCache.get(key);
    if (hit && Date.now() - hit.at < ttl) return hit.credentials;
    const generation = this.generation;
    const credentials = await this.keys.credentials(org, keyId);
    if (ttl > 0 && generation === this.generation) {
      if (this.credentialCache.size >= 10_000) this.credentialCache.clear();
      this.credentialCache.set(key, { credentials, at: Date.now() });
    }
    return credentials;
  }

  countDueToExpire(org: OrgRef): Promise<number> {
    return this.keys.countDueToExpire(org);
  }

  /** At most `limit` keys past their expiry, marked expired: a batch. */
  markExpired(org: OrgRef, limit: number): Promise<string[]> {
    return this.keys.markExpired(org, limit);
  }
}

function cacheKey(org: OrgRef, keyId: string): string {
  return `${org.id}/${keyId}`;
}

/** A key that is neither revoked nor expired, of a user who is not disabled. */
function mayAct(key: KeyCredentials, now: Date): boolean {
  return !key.revokedAt && !key.userDisabled && !(key.expiresAt && key.expiresAt <= now);
}
