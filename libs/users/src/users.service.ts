import { Injectable } from '@nestjs/common';
import { randomId } from '@coffer/crypto';
import { pgCode, PG_UNIQUE_VIOLATION, transaction } from '@coffer/database';
import { AppError } from '@coffer/http';
import type { OrgRef } from '@coffer/tenancy';
import { ApiKeysService } from './api-keys.service';
import type { Role } from '@coffer/tenancy';
import { ApiKey, User } from './user';
import { UsersRepository } from './users.repository';

export interface NewUser {
  email: string;
  displayName: string;
  role: Role;
}

@Injectable()
export class UsersService {
  constructor(
    private readonly users: UsersRepository,
    private readonly apiKeys: ApiKeysService,
  ) {}

  async create(org: OrgRef, input: NewUser): Promise<User> {
    try {
      return await this.users.insert(this.users.pool(org), org, { id: randomId(), ...input });
    } catch (error) {
      if (pgCode(error) === PG_UNIQUE_VIOLATION) {
        throw new AppError('user_email_taken', 'a user with this email already exists in the organization');
      }
      throw error;
    }
  }

  /**
   * An org's first admin and their key, or undefined if the org has a user already. The check
   * holds a lock until the caller's transaction ends, so of two creations racing, the second
   * sees the first's admin once it has committed (and gets undefined).
   */
  async createFirstAdmin(org: OrgRef, input: Omit<NewUser, 'role'>): Promise<{ user: User; apiKey: ApiKey & { secret: string } } | undefined> {
    return transaction(this.users.pool(org), async (db) => {
      await db.query("SELECT pg_advisory_xact_lock(hashtextextended('coffer-first-admin', 0))");
      if ((await db.query('SELECT 1 FROM users LIMIT 1')).rowCount) return undefined;
      const user = await this.users.insert(db, org, { id: randomId(), ...input, role: 'admin' });
      const { apiKey } = await this.apiKeys.insert(db, org, user.id, { name: 'initial admin key', expiresAt: null });
      return { user, apiKey };
    });
  }

  async get(org: OrgRef, id: string): Promise<User> {
    const user = await this.users.findById(org, id);
    if (!user) throw new AppError('user_not_found', 'no such user in this organization');
    return user;
  }

  list(org: OrgRef): Promise<User[]> {
    return this.users.list(org);
  }

  /**
   * Disabling is immediate for every key of the user: authentication checks it each time. The
   * org's last active admin cannot be disabled (last_admin): nobody could then manage the org.
   */
  async disable(org: OrgRef, id: string): Promise<User> {
    const user = await transaction(this.users.pool(org), (db) => this.users.disableUnlessLastAdmin(db, org, id));
    if (user === 'last_admin') throw new AppError('last_admin', "the organization's last active admin cannot be disabled; make another user admin first");
    if (!user) throw new AppError('user_not_found', 'no such user in this organization');
    this.apiKeys.forgetUser(user.id);
    return user;
  }

  /** A disabled user's keys work again (those not revoked or expired meanwhile). */
  async enable(org: OrgRef, id: string): Promise<User> {
    const user = await this.users.enable(org, id);
    if (!user) throw new AppError('user_not_found', 'no such user in this organization');
    this.apiKeys.forgetUser(user.id);
    return user;
  }
}
