import { createHash } from 'node:crypto';

/**
 * How a sensitive column is stored: a bytea whose first byte names the format, plus (for
 * lookups) a separate index column. Format 0 is plaintext UTF-8 with an unkeyed index; the
 * encryption issue adds format 1 (AES-256-GCM under the org's field DEK, with table/column/row
 * as associated data) and a keyed blind index, and migrates format-0 rows. Nothing else about
 * the tables has to change, which is why callers go through this interface today.
 */
export interface FieldCodec {
  seal(plaintext: string, context: FieldContext): Buffer;
  open(stored: Buffer, context: FieldContext): string;
  /** Deterministic lookup value for equality searches and uniqueness. */
  index(normalized: string, context: Omit<FieldContext, 'rowId'>): Buffer;
}

export interface FieldContext {
  table: string;
  column: string;
  rowId: string;
}

export const FIELD_FORMAT_PLAINTEXT = 0;

export class PlaintextFieldCodec implements FieldCodec {
  seal(plaintext: string, _context?: FieldContext): Buffer {
    return Buffer.concat([Buffer.from([FIELD_FORMAT_PLAINTEXT]), Buffer.from(plaintext, 'utf8')]);
  }

  open(stored: Buffer, context: FieldContext): string {
    if (stored[0] !== FIELD_FORMAT_PLAINTEXT) {
      throw new Error(`unknown field format ${stored[0]} in ${context.table}.${context.column}`);
    }
    return stored.subarray(1).toString('utf8');
  }

  index(normalized: string, context: Omit<FieldContext, 'rowId'>): Buffer {
    return createHash('sha256').update(`${context.table}.${context.column}\0${normalized}`).digest();
  }
}
