import type { Readable } from 'node:stream';

/**
 * Where package objects are kept. Objects are written whole, with one call (a single PUT on
 * S3), and read whole or by byte range. Drivers see only ciphertext (libs/storage/README.md).
 */
export interface StorageDriver {
  readonly kind: 'filesystem' | 's3';
  /** Creates the directory or the bucket if missing; called once at start. */
  ready(): Promise<void>;
  /**
   * Replaces the object atomically: a reader sees the old bytes or the new, never a mix.
   * `retainUntil` asks the server to refuse deleting or overwriting the object before then
   * (S3 object lock, compliance mode, on a bucket created with object lock); the filesystem
   * driver cannot enforce it and ignores it.
   */
  put(key: string, body: Buffer, options?: PutOptions): Promise<void>;
  /** The object's bytes, or `range` of them (inclusive ends); StorageObjectNotFound if absent. */
  get(key: string, range?: ByteRange): Promise<Readable>;
  /** Removes the objects; absent ones are not an error. */
  delete(keys: readonly string[]): Promise<void>;
  /** Keys starting with `prefix`, in no particular order. */
  list(prefix: string): AsyncIterable<string>;
  /**
   * The storage server's own at-rest encryption of new objects (S3 bucket default encryption,
   * e.g. `AES256` or `aws:kms`), as the server reports it now; null when it has none or will not
   * say. A second layer under Coffer's, reported, never relied upon (ADR 0003).
   */
  serverSideEncryption(): Promise<string | null>;
}

export interface PutOptions {
  retainUntil?: Date;
}

export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

export class StorageObjectNotFound extends Error {
  readonly code = 'storage_object_not_found';
  constructor(key: string) {
    super(`no stored object ${key}`);
  }
}

/**
 * Keys are `/`-separated segments of a safe alphabet, so a key can never climb out of the
 * storage directory (`..`) or mean something else to an S3 server.
 */
export function assertStorageKey(key: string): void {
  const parts = key.split('/');
  if (!parts.length || parts.some((p) => !/^[A-Za-z0-9_.-]{1,128}$/.test(p) || p === '.' || p === '..')) {
    throw new Error('invalid storage key');
  }
}
