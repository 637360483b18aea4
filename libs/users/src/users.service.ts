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
   * An org's first admin and its key, in one transaction. Re-running it for the same email (a
   * retried org creation) reuses the user and issues a fresh key, so retries converge.
   */
  async createAdminWithKey(org: OrgRef, input: Omit<NewUser, 'role'>): Promise<{ user: User; apiKey: ApiKey; secret: string }> {
    return transaction(this.users.pool(org), async (db) => {
      const user =
        (await this.users.findByEmail(db, org, input.email)) ?? (await this.users.insert(db, org, { id: randomId(), ...input, role: 'admin' }));
      const { apiKey, secret } = await this.apiKeys.insert(db, org, user.id, { name: 'initial admin key', expiresAt: null });
      return { user, apiKey, secret };
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

  /** Disabling is immediate for every key of the user: authentication checks it each time. */
  async disable(org: OrgRef, id: string): Promise<User> {
    const user = await this.users.disable(org, id);
    if (!user) throw new AppError('user_not_found', 'no such user in this organization');
    this.apiKeys.forgetUser(user.id);
    return user;
  }
}
