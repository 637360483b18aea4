import { Injectable } from '@nestjs/common';
import { DatabaseService } from '@coffer/database';
import { OrgRef, OrgRow, toOrgRef } from './org';

const COLUMNS = 'id, slug, name, database_name, database_server, status, created_at, provisioned_at';

/** The org registry as the app role sees it: read-only. */
@Injectable()
export class OrgsRepository {
  constructor(private readonly db: DatabaseService) {}

  async findBySlug(slug: string): Promise<OrgRef | undefined> {
    const { rows } = await this.db.control.query<OrgRow>(`SELECT ${COLUMNS} FROM organizations WHERE slug = $1`, [slug]);
    return rows[0] && toOrgRef(rows[0]);
  }

  async findById(id: string): Promise<OrgRef | undefined> {
    const { rows } = await this.db.control.query<OrgRow>(`SELECT ${COLUMNS} FROM organizations WHERE id = $1`, [id]);
    return rows[0] && toOrgRef(rows[0]);
  }

  async list(status?: OrgRef['status']): Promise<OrgRef[]> {
    const { rows } = await this.db.control.query<OrgRow>(
      `SELECT ${COLUMNS} FROM organizations WHERE $1::text IS NULL OR status = $1 ORDER BY slug`,
      [status ?? null],
    );
    return rows.map(toOrgRef);
  }
}
