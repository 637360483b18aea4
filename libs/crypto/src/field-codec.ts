import { createHash, createHmac, hkdfSync } from 'node:crypto';
import { AppError } from '@coffer/http';
import { aeadOpen, aeadSeal } from './aead';

/**
 * How a sensitive column is stored: a bytea whose first byte names the format, plus (for
 * lookups) a separate index column. Format 0 is plaintext UTF-8 with an unkeyed index, as
 * written before field encryption; format 1 is AES-256-GCM under the org's field DEK with
 * table/column/row as associated data, and a keyed blind index (libs/fields/README.md says
 * where the keys come from and why the index key is its own).
 */
export interface FieldCodec {
  seal(plaintext: string, context: FieldContext): Buffer;
  open(stored: Buffer, context: FieldContext): string;
  sealBytes(plaintext: Buffer, context: FieldContext): Buffer;
  openBytes(stored: Buffer, context: FieldContext): Buffer;
  /** Deterministic lookup value for equality searches and uniqueness. */
  index(normalized: string, context: Omit<FieldContext, 'rowId'>): Buffer;
}

export interface FieldContext {
  table: string;
  column: string;
  rowId: string;
}

export const FIELD_FORMAT_PLAINTEXT = 0;
export const FIELD_FORMAT_AES_GCM = 1;

/** A stored field that does not authenticate: moved to another row or column, or edited. */
export class FieldDecryptionError extends AppError {
  constructor(context: FieldContext, reason = 'failed to authenticate') {
    // Table and column only: the row id and the value stay out of errors and logs.
    super('field_decryption_failed', `a stored ${context.table}.${context.column} value ${reason}`);
  }
}

abstract class StringFieldCodec implements FieldCodec {
  abstract sealBytes(plaintext: Buffer, context: FieldContext): Buffer;
  abstract openBytes(stored: Buffer, context: FieldContext): Buffer;
  abstract index(normalized: string, context: Omit<FieldContext, 'rowId'>): Buffer;

  seal(plaintext: string, context: FieldContext): Buffer {
    return this.sealBytes(Buffer.from(plaintext, 'utf8'), context);
  }

  open(stored: Buffer, context: FieldContext): string {
    return this.openBytes(stored, context).toString('utf8');
  }
}

/** Format 0: what rows written before field encryption hold. Read only by the migration now. */
export class PlaintextFieldCodec extends StringFieldCodec {
  sealBytes(plaintext: Buffer, _context?: FieldContext): Buffer {
    return Buffer.concat([Buffer.from([FIELD_FORMAT_PLAINTEXT]), plaintext]);
  }

  openBytes(stored: Buffer, context: FieldContext): Buffer {
    if (stored[0] !== FIELD_FORMAT_PLAINTEXT) throw new FieldDecryptionError(context, `has unknown format ${stored[0]}`);
    return stored.subarray(1);
  }

  index(normalized: string, context: Omit<FieldContext, 'rowId'>): Buffer {
    return createHash('sha256').update(`${context.table}.${context.column}\0${normalized}`).digest();
  }
}

export interface FieldKeys {
  /** The data key new values are sealed with, and its id (written into every value). */
  current: { id: number; key: Buffer };
  /** Every field data key that may have sealed a stored value, by id (current included). */
  byId: ReadonlyMap<number, Buffer>;
  /** The blind-index key: never encrypts, only keys the HMAC of lookup values. */
  indexKey: Buffer;
}

const HEADER_BYTES = 5;

/**
 * Format 1: `0x01 || key id (uint32 BE) || AES-256-GCM(iv || ciphertext || tag)`. The associated
 * data names the format, key id, table, column and row, so a value copied into another row or
 * column, or relabelled with another key id, fails to open. Format 0 is refused: accepting
 * plaintext here would let whoever can write the database plant a value of their choosing
 * (an API key hash) past the authentication the encryption gives.
 */
export class EncryptedFieldCodec extends StringFieldCodec {
  constructor(private readonly keys: FieldKeys) {
    super();
  }

  sealBytes(plaintext: Buffer, context: FieldContext): Buffer {
    const { id, key } = this.keys.current;
    const header = fieldHeader(id);
    return Buffer.concat([header, aeadSeal(key, plaintext, associatedData(id, context))]);
  }

  openBytes(stored: Buffer, context: FieldContext): Buffer {
    if (stored.length < HEADER_BYTES || stored[0] !== FIELD_FORMAT_AES_GCM) {
      throw new FieldDecryptionError(context, `is not in the encrypted format (format ${stored[0]})`);
    }
    const id = stored.readUInt32BE(1);
    const key = this.keys.byId.get(id);
    if (!key) throw new FieldDecryptionError(context, `names an unknown field key (${id})`);
    try {
      return aeadOpen(key, stored.subarray(HEADER_BYTES), associatedData(id, context));
    } catch {
      throw new FieldDecryptionError(context);
    }
  }

  /**
   * HMAC-SHA256 under a per-column key derived (HKDF) from the index key: equal inputs give
   * equal indexes within a column, and nothing is comparable across columns or orgs.
   */
  index(normalized: string, context: Omit<FieldContext, 'rowId'>): Buffer {
    const info = `coffer-blind-index:${context.table}.${context.column}`;
    const columnKey = Buffer.from(hkdfSync('sha256', this.keys.indexKey, Buffer.alloc(0), info, 32));
    try {
      return createHmac('sha256', columnKey).update(normalized, 'utf8').digest();
    } finally {
      columnKey.fill(0);
    }
  }
}

function fieldHeader(keyId: number): Buffer {
  const header = Buffer.alloc(HEADER_BYTES);
  header[0] = FIELD_FORMAT_AES_GCM;
  header.writeUInt32BE(keyId, 1);
  return header;
}

function associatedData(keyId: number, context: FieldContext): string {
  return JSON.stringify(['coffer-field', FIELD_FORMAT_AES_GCM, keyId, context.table, context.column, context.rowId]);
}
