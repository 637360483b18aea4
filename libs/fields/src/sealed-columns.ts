import type { ClientBase } from 'pg';
import { FieldCodec, PlaintextFieldCodec } from '@coffer/crypto';
import { quoteIdent } from '@coffer/database';

/** The sensitive columns of an org database, and how their rows from before encryption look. */
export interface SealedColumn {
  table: string;
  column: string;
  /** The column whose value is the row id in the associated data. */
  idColumn: string;
  /** SQL true for a value still in its pre-encryption form. */
  legacy: string;
  /** Format 0 (prefix byte, UTF-8), or raw bytes with no prefix (API key hashes were stored so). */
  legacyForm: 'format0' | 'raw';
  /** The blind-index column computed from the plaintext, if the column is looked up by value. */
  indexColumn?: string;
}

export const USER_EMAIL = { table: 'users', column: 'email' } as const;
export const API_KEY_SECRET_HASH = { table: 'api_keys', column: 'secret_hash' } as const;
export const ORG_SETTING_VALUE = { table: 'org_settings', column: 'value' } as const;

export const SEALED_COLUMNS: readonly SealedColumn[] = [
  { ...USER_EMAIL, idColumn: 'id', legacy: 'get_byte(email, 0) = 0', legacyForm: 'format0', indexColumn: 'email_index' },
  // A bare SHA-256 is 32 bytes; a sealed one is 65 (prefix, key id, nonce, hash, tag).
  { ...API_KEY_SECRET_HASH, idColumn: 'id', legacy: 'length(secret_hash) = 32', legacyForm: 'raw' },
  { ...ORG_SETTING_VALUE, idColumn: 'key', legacy: 'get_byte(value, 0) = 0', legacyForm: 'format0' },
];

const plaintext = new PlaintextFieldCodec();

/**
 * Seals every row still in its pre-encryption form, `batchSize` rows per transaction, and
 * recomputes its blind index. Idempotent (only legacy rows are selected) and resumable: a run
 * that stops half-way leaves whole batches done and the rest for the next run. Returns the
 * number of values sealed.
 */
export async function sealLegacyRows(client: ClientBase, codec: FieldCodec, batchSize = 500): Promise<number> {
  let sealed = 0;
  for (const col of SEALED_COLUMNS) {
    const [table, column, id] = [quoteIdent(col.table), quoteIdent(col.column), quoteIdent(col.idColumn)];
    for (;;) {
      await client.query('BEGIN');
      try {
        const { rows } = await client.query<{ id: string; value: Buffer }>(
          `SELECT ${id} AS id, ${column} AS value FROM ${table} WHERE ${col.legacy} ORDER BY ${id} LIMIT $1 FOR UPDATE`,
          [batchSize],
        );
        for (const row of rows) {
          const context = { table: col.table, column: col.column, rowId: row.id };
          const value = col.legacyForm === 'raw' ? row.value : plaintext.openBytes(row.value, context);
          const params = [row.id, codec.sealBytes(value, context)];
          if (col.indexColumn) params.push(codec.index(value.toString('utf8'), col));
          await client.query(
            `UPDATE ${table} SET ${column} = $2${col.indexColumn ? `, ${quoteIdent(col.indexColumn)} = $3` : ''} WHERE ${id} = $1`,
            params,
          );
        }
        await client.query('COMMIT');
        sealed += rows.length;
        if (rows.length < batchSize) break;
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      }
    }
  }
  return sealed;
}
