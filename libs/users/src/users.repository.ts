import { Injectable } from '@nestjs/common';
import { ClientBase, Pool } from 'pg';
import { DatabaseService } from '@coffer/database';
import { FieldCodec } from '@coffer/crypto';
import { FieldKeysService, USER_EMAIL } from '@coffer/fields';
import type { OrgRef } from '@coffer/tenancy';
import type { Role } from '@coffer/tenancy';
import { normalizeEmail, User } from './user';

interface UserRow {
  id: string;
  email: Buffer;
  display_name: string;
  role: Role;
  disabled_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

/** Emails are sealed with the org's field codec; lookups and uniqueness use its blind index. */
@Injectable()
export class UsersRepository {
  constructor(
    private readonly db: DatabaseService,
    private readonly fieldKeys: FieldKeysService,
  ) {}

  pool(org: OrgRef): Pool {
    return this.db.org(org.databaseName, org.databaseServer);
  }

  async insert(db: ClientBase | Pool, org: OrgRef, user: { id: string; email: string; displayName: string; role: Role }): Promise<User> {
    const codec = await this.fieldKeys.codec(org);
    const email = normalizeEmail(user.email);
    const { rows } = await db.query<UserRow>(
      `INSERT INTO users (id, email, email_index, display_name, role) VALUES ($1, $2, $3, $4, $5) RETURNING *`,
      [user.id, codec.seal(email, { ...USER_EMAIL, rowId: user.id }), codec.index(email, USER_EMAIL), user.displayName, user.role],
    );
    return toUser(codec, rows[0]);
  }

  async findById(org: OrgRef, id: string): Promise<User | undefined> {
    const codec = await this.fieldKeys.codec(org);
    const { rows } = await this.pool(org).query<UserRow>('SELECT * FROM users WHERE id = $1', [id]);
    return rows[0] && toUser(codec, rows[0]);
  }

  async findByEmail(db: ClientBase | Pool, org: OrgRef, email: string): Promise<User | undefined> {
    const codec = await this.fieldKeys.codec(org);
    const { rows } = await db.query<UserRow>('SELECT * FROM users WHERE email_index = $1', [codec.index(normalizeEmail(email), USER_EMAIL)]);
    return rows[0] && toUser(codec, rows[0]);
  }

  async list(org: OrgRef): Promise<User[]> {
    const codec = await this.fieldKeys.codec(org);
    const { rows } = await this.pool(org).query<UserRow>('SELECT * FROM users ORDER BY created_at, id');
    return rows.map((row) => toUser(codec, row));
  }

  /**
   * Disables the user unless they are the last active admin. The active admins' rows are locked
   * first, so two admins disabling each other at once cannot both succeed.
   */
  async disableUnlessLastAdmin(db: ClientBase, org: OrgRef, id: string): Promise<User | 'last_admin' | undefined> {
    const codec = await this.fieldKeys.codec(org);
    const { rows: admins } = await db.query<{ id: string }>(`SELECT id FROM users WHERE role = 'admin' AND disabled_at IS NULL FOR UPDATE`);
    if (admins.length === 1 && admins[0].id === id) return 'last_admin';
    const { rows } = await db.query<UserRow>(
      `UPDATE users SET disabled_at = coalesce(disabled_at, now()), updated_at = now() WHERE id = $1 RETURNING *`,
      [id],
    );
    return rows[0] && toUser(codec, rows[0]);
  }

  async enable(org: OrgRef, id: string): Promise<User | undefined> {
    const codec = await this.fieldKeys.codec(org);
    const { rows } = await this.pool(org).query<UserRow>(`UPDATE users SET disabled_at = NULL, updated_at = now() WHERE id = $1 RETURNING *`, [id]);
    return rows[0] && toUser(codec, rows[0]);
  }
}

function toUser(codec: FieldCodec, row: UserRow): User {
  return {
    id: row.id,
    email: codec.open(row.email, { ...USER_EMAIL, rowId: row.id }),
    displayName: row.display_name,
    role: row.role,
    disabled: row.disabled_at !== null,
    disabledAt: row.disabled_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
