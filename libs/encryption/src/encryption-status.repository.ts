import { Injectable } from '@nestjs/common';
import type { Pool } from 'pg';
import { DatabaseService, quoteIdent } from '@coffer/database';
import { SEALED_COLUMNS } from '@coffer/fields';
import type { OrgRef } from '@coffer/tenancy';

/** What the encryption status counts in an org's database. */
@Injectable()
export class EncryptionStatusRepository {
  constructor(private readonly db: DatabaseService) {}

  private pool(org: OrgRef): Pool {
    return this.db.org(org.databaseName, org.databaseServer);
  }

  /** Per sensitive column, how many rows are sealed and how many still hold plaintext (a scan each). */
  sealedColumns(org: OrgRef): Promise<{ table: string; column: string; encrypted: number; plaintext: number }[]> {
    const pool = this.pool(org);
    return Promise.all(
      SEALED_COLUMNS.map(async ({ table, column, legacy }) => {
        const { rows } = await pool.query<{ total: string; plaintext: string }>(
          `SELECT count(*) AS total, count(*) FILTER (WHERE ${legacy}) AS plaintext FROM ${quoteIdent(table)}`,
        );
        const [total, plaintext] = [Number(rows[0].total), Number(rows[0].plaintext)];
        return { table, column, encrypted: total - plaintext, plaintext };
      }),
    );
  }

  /** Committed package versions, and how many of them have their data key wrapped by the KMS. */
  async packageVersions(org: OrgRef): Promise<{ versions: number; kmsWrapped: number }> {
    const { rows } = await this.pool(org).query<{ versions: string; kms_wrapped: string }>(
      `SELECT count(*) AS versions, count(*) FILTER (WHERE wrapped_dek ~ '^(vault|local):v[0-9]+:') AS kms_wrapped
       FROM package_versions WHERE state = 'committed'`,
    );
    return { versions: Number(rows[0].versions), kmsWrapped: Number(rows[0].kms_wrapped) };
  }
}
