import { Injectable } from '@nestjs/common';
import { ClientBase, Pool } from 'pg';
import { DatabaseService } from '@coffer/database';
import type { OrgRef } from '@coffer/orgs';
import { FieldCodec, PlaintextFieldCodec } from '@coffer/crypto';
import { normalizeEmail, Role, User } from './user';

interface UserRow {
  id: string;
  email: Buffer;
  display_name: string;
  role: Role;
  disabled_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

const EMAIL = { table: 'users', column: 'email' } as const;

@Injectable()
export class UsersRepository {
  // The encryption issue replaces this with the org's AES-256-GCM codec.
  private readonly codec: FieldCodec = new PlaintextFieldCodec();

  constructor(private readonly db: DatabaseService) {}

  pool(org: OrgRef): Pool {
    return this.db.org(org.databaseName, org.databaseServer);
  }

  async insert(db: ClientBase | Pool, user: { id: string; email: string; displayName: string; role: Role }): Promise<User> {
    const email = normalizeEmail(user.email);
    const { rows } = await db.query<UserRow>(
      `INSERT INTO users (id, email, email_index, display_name, role) VALUES ($1, $2, $3, $4, $5) RETURNING *`,
      [user.id, this.codec.seal(email, { ...EMAIL, rowId: user.id }), this.emailIndex(email), user.displayName, user.role],
    );
    return this.toUser(rows[0]);
  }

  async findById(org: OrgRef, id: string): Promise<User | undefined> {
    const { rows } = await this.pool(org).query<UserRow>('SELECT * FROM users WHERE id = $1', [id]);
    return rows[0] && this.toUser(rows[0]);
  }

  async findByEmail(db: ClientBase | Pool, email: string): Promise<User | undefined> {
    const { rows } = await db.query<UserRow>('SELECT * FROM users WHERE email_index = $1', [
      this.emailIndex(normalizeEmail(email)),
    ]);
    return rows[0] && this.toUser(rows[0]);
  }

  async list(org: OrgRef): Promise<User[]> {
    const { rows } = await this.pool(org).query<UserRow>('SELECT * FROM users ORDER BY created_at, id');
    return rows.map((row) => this.toUser(row));
  }

  async disable(org: OrgRef, id: string): Promise<User | undefined> {
    const { rows } = await this.pool(org).query<UserRow>(
      `UPDATE users SET disabled_at = coalesce(disabled_at, now()), updated_at = now() WHERE id = $1 RETURNING *`,
      [id],
    );
    return rows[0] && this.toUser(rows[0]);
  }

  private emailIndex(normalized: string): Buffer {
    return this.codec.index(normalized, EMAIL);
  }

  private toUser(row: UserRow): User {
    return {
      id: row.id,
      email: this.codec.open(row.email, { ...EMAIL, rowId: row.id }),
      displayName: row.display_name,
      role: row.role,
      disabled: row.disabled_at !== null,
      disabledAt: row.disabled_at,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
    };
  }
}
