import { createCipheriv, createDecipheriv, createHash, hkdfSync } from 'node:crypto';
import type { Readable } from 'node:stream';
import { ByteRange, StorageDriver, StorageObjectNotFound } from './storage-driver';

/**
 * The stored form of a package version (README.md): segmented streaming AEAD under a key
 * derived from a per-object DEK, segments grouped into chunk objects, plus a sealed manifest.
 */
export const FORMAT = 'coffer-package-v1';
const TAG_BYTES = 16;
const PUTS_IN_FLIGHT = 3;

/** Which object: both ids are bound into the key derivation and every segment's AAD. */
export interface ObjectRef {
  orgId: string;
  objectId: string;
}

export interface ObjectLayout {
  /** Plaintext bytes per segment (the last may be shorter, or empty for an empty object). */
  segmentSize: number;
  segmentsPerChunk: number;
}

export interface Manifest extends ObjectLayout {
  format: typeof FORMAT;
  orgId: string;
  objectId: string;
  size: number;
  chunks: number;
  sha256: string;
}

export class ObjectTooLarge extends Error {
  readonly code = 'object_too_large';
  constructor(readonly limit: number) {
    super(`object larger than ${limit} bytes`);
  }
}

/** Stored bytes that do not authenticate: tampered, truncated, reordered or foreign. */
export class ObjectIntegrityError extends Error {
  readonly code = 'object_integrity_failed';
}

export const objectPrefix = (ref: ObjectRef) => `orgs/${ref.orgId}/packages/${ref.objectId}/`;
export const manifestKey = (ref: ObjectRef) => `${objectPrefix(ref)}manifest`;
export const chunkKey = (ref: ObjectRef, chunk: number) => `${objectPrefix(ref)}chunk-${String(chunk).padStart(8, '0')}`;

export function layoutFor(segmentBytes: number, chunkBytes: number): ObjectLayout {
  return { segmentSize: segmentBytes, segmentsPerChunk: Math.max(1, Math.floor(chunkBytes / segmentBytes)) };
}

/** HKDF-SHA256 of the DEK with the org and object ids: a DEK moved to another object opens nothing. */
function objectKey(dek: Buffer, ref: ObjectRef): Buffer {
  return Buffer.from(hkdfSync('sha256', dek, FORMAT, `${ref.orgId}\0${ref.objectId}`, 32));
}

/** Segment i's nonce: 0x00000000 || i (64-bit BE). Unique per key: each index is sealed once. */
function segmentNonce(index: number): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(BigInt(index), 4);
  return nonce;
}

/** The manifest's nonce can never equal a segment's: its first four bytes are not zero. */
const MANIFEST_NONCE = Buffer.from('ffffffff0000000000000000', 'hex');

function aad(ref: ObjectRef, part: string): Buffer {
  return Buffer.from(`${FORMAT}\0${ref.orgId}\0${ref.objectId}\0${part}`);
}

const segmentAad = (ref: ObjectRef, index: number, final: boolean) => aad(ref, `segment\0${index}\0${final ? 1 : 0}`);

function seal(key: Buffer, nonce: Buffer, associated: Buffer, plaintext: Buffer, out: Buffer, at: number): number {
  const cipher = createCipheriv('aes-256-gcm', key, nonce).setAAD(associated);
  let n = cipher.update(plaintext).copy(out, at);
  n += cipher.final().copy(out, at + n);
  return n + cipher.getAuthTag().copy(out, at + n);
}

function open(key: Buffer, nonce: Buffer, associated: Buffer, sealed: Buffer, what: string): Buffer {
  if (sealed.length < TAG_BYTES) throw new ObjectIntegrityError(`${what} is truncated`);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce).setAAD(associated);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const plain = decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES));
    const rest = decipher.final(); // verifies the tag; empty for GCM, so usually no copy
    return rest.length ? Buffer.concat([plain, rest]) : plain;
  } catch {
    throw new ObjectIntegrityError(`${what} does not authenticate`);
  }
}

export interface WriteOptions {
  layout: ObjectLayout;
  maxBytes: number;
  /** Called after each chunk object is stored (progress, liveness). */
  onChunk?: (chunk: number) => Promise<void> | void;
}

/**
 * Encrypts `source` into chunk objects and a manifest. Memory: one segment being filled and
 * PUTS_IN_FLIGHT + 1 chunk buffers. A segment is sealed only once it is
 * known whether more data follows, so the final flag is right and no index is sealed twice.
 * Throws (leaving whatever chunks were written for the sweep) if `source` fails or is too large.
 */
export async function writeSealedObject(
  driver: StorageDriver,
  ref: ObjectRef,
  dek: Buffer,
  source: AsyncIterable<Buffer>,
  options: WriteOptions,
): Promise<Manifest> {
  const { segmentSize, segmentsPerChunk } = options.layout;
  const key = objectKey(dek, ref);
  const chunkCapacity = segmentsPerChunk * (segmentSize + TAG_BYTES);
  // One buffer filling while up to PUTS_IN_FLIGHT others are being stored: storage latency
  // (an fsync, an S3 round trip) overlaps with receiving and sealing.
  const buffers = Array.from({ length: PUTS_IN_FLIGHT + 1 }, () => Buffer.allocUnsafe(chunkCapacity));
  const pending = Buffer.allocUnsafe(segmentSize);
  const hash = createHash('sha256');
  let pendingFill = 0;
  let size = 0;
  let segment = 0;
  let chunk = 0;
  let chunkFill = 0;
  const storing: Promise<void>[] = [];

  const flushChunk = async () => {
    const body = buffers[chunk % buffers.length].subarray(0, chunkFill);
    const index = chunk++;
    chunkFill = 0;
    const put = (async () => {
      await driver.put(chunkKey(ref, index), body);
      await options.onChunk?.(index);
    })();
    put.catch(() => undefined); // awaited below; never an unhandled rejection meanwhile
    storing.push(put);
    // The buffer the next chunk fills is free once the oldest PUT beyond the limit is done.
    while (storing.length > PUTS_IN_FLIGHT) await storing.shift();
  };
  const sealSegment = async (final: boolean) => {
    chunkFill += seal(key, segmentNonce(segment), segmentAad(ref, segment, final), pending.subarray(0, pendingFill), buffers[chunk % buffers.length], chunkFill);
    segment++;
    pendingFill = 0;
    if (segment % segmentsPerChunk === 0 || final) await flushChunk();
  };

  try {
    for await (const data of source) {
      size += data.length;
      if (size > options.maxBytes) throw new ObjectTooLarge(options.maxBytes);
      hash.update(data);
      for (let offset = 0; offset < data.length; ) {
        if (pendingFill === segmentSize) await sealSegment(false);
        const n = Math.min(segmentSize - pendingFill, data.length - offset);
        data.copy(pending, pendingFill, offset, offset + n);
        pendingFill += n;
        offset += n;
      }
    }
    await sealSegment(true);
  } catch (error) {
    // No PUT may land after the caller gives the upload up (the sweep could miss it).
    await Promise.allSettled(storing);
    throw error;
  }
  // Every PUT settled before the outcome is known: a failed one fails the upload only after the
  // others have landed or failed, so none lands behind the caller's back.
  const failed = (await Promise.allSettled(storing)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;

  const manifest: Manifest = {
    format: FORMAT,
    orgId: ref.orgId,
    objectId: ref.objectId,
    size,
    segmentSize,
    segmentsPerChunk,
    chunks: chunk,
    sha256: hash.digest('hex'),
  };
  const plain = Buffer.from(JSON.stringify(manifest));
  const sealed = Buffer.allocUnsafe(plain.length + TAG_BYTES);
  seal(key, MANIFEST_NONCE, aad(ref, 'manifest'), plain, sealed, 0);
  await driver.put(manifestKey(ref), sealed);
  return manifest;
}

/**
 * A stored object opened for reading: its manifest authenticated, checked against what the
 * database says (`expectedSize`).
 */
export class SealedObjectReader {
  private constructor(
    private readonly driver: StorageDriver,
    private readonly ref: ObjectRef,
    private readonly key: Buffer,
    readonly manifest: Manifest,
  ) {}

  static async open(driver: StorageDriver, ref: ObjectRef, dek: Buffer, expectedSize: number): Promise<SealedObjectReader> {
    const key = objectKey(dek, ref);
    const sealed = await readAll(await getOrIntegrityError(driver, manifestKey(ref)));
    const manifest = JSON.parse(open(key, MANIFEST_NONCE, aad(ref, 'manifest'), sealed, 'manifest').toString()) as Manifest;
    const segments = segmentCount(manifest);
    if (
      manifest.format !== FORMAT ||
      manifest.orgId !== ref.orgId ||
      manifest.objectId !== ref.objectId ||
      manifest.size !== expectedSize ||
      manifest.chunks !== Math.ceil(segments / manifest.segmentsPerChunk)
    ) {
      throw new ObjectIntegrityError('manifest does not match the object');
    }
    return new SealedObjectReader(driver, ref, key, manifest);
  }

  /**
   * Plaintext bytes `range` (inclusive; all of it by default), released one authenticated
   * segment at a time: a segment that fails stops the stream before any of its bytes.
   */
  async *read(range?: ByteRange): AsyncGenerator<Buffer> {
    const { size, segmentSize: S, segmentsPerChunk: K } = this.manifest;
    const last = segmentCount(this.manifest) - 1;
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    const first = Math.floor(start / S);
    const final = size === 0 ? 0 : Math.floor(end / S);
    const sealedLength = (i: number) => (i === last ? size - last * S : S) + TAG_BYTES;
    const lastChunk = Math.floor(final / K);
    const openChunk = (chunk: number) => {
      const from = Math.max(first, chunk * K);
      const to = Math.min(final, chunk * K + K - 1);
      const whole = from === chunk * K && to === Math.min(last, chunk * K + K - 1);
      const offset = (from - chunk * K) * (S + TAG_BYTES);
      const range = whole ? undefined : { start: offset, end: offset + (to - from) * (S + TAG_BYTES) + sealedLength(to) - 1 };
      const stream = getOrIntegrityError(this.driver, chunkKey(this.ref, chunk), range);
      stream.catch(() => undefined); // awaited in its turn; never an unhandled rejection meanwhile
      return { from, to, whole, stream };
    };
    // The next chunk's request is made while this one is decrypted: its latency (an S3 round
    // trip) overlaps; it holds at most one stream buffer until its turn.
    let next = openChunk(Math.floor(first / K));
    try {
      for (let chunk = Math.floor(first / K); chunk <= lastChunk; chunk++) {
        const { from, to, whole, stream } = next;
        const reader = new ExactReader(await stream);
        if (chunk < lastChunk) next = openChunk(chunk + 1);
        try {
          for (let i = from; i <= to; i++) {
            const sealed = await reader.take(sealedLength(i));
            const plain = open(this.key, segmentNonce(i), segmentAad(this.ref, i, i === last), sealed, `segment ${i}`);
            const lo = Math.max(start - i * S, 0);
            const hi = Math.min(end - i * S + 1, plain.length);
            if (hi > lo) yield plain.subarray(lo, hi);
          }
          if (whole && !(await reader.atEnd())) throw new ObjectIntegrityError(`chunk ${chunk} is longer than its segments`);
        } finally {
          reader.close();
        }
      }
    } finally {
      // A reader stopped early (failure, client gone) releases the prefetched chunk too.
      next.stream.then((stream) => stream.destroy(), () => undefined);
    }
  }
}

function segmentCount(manifest: Pick<Manifest, 'size' | 'segmentSize'>): number {
  return Math.max(1, Math.ceil(manifest.size / manifest.segmentSize));
}

async function getOrIntegrityError(driver: StorageDriver, key: string, range?: ByteRange): Promise<Readable> {
  try {
    return await driver.get(key, range);
  } catch (error) {
    if (error instanceof StorageObjectNotFound) throw new ObjectIntegrityError('a stored object is missing');
    // A range past the end of a chunk: the chunk was truncated.
    if ((error as { code?: string }).code === 'InvalidRange') throw new ObjectIntegrityError('a stored object is truncated');
    throw error;
  }
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/** Reads exact byte counts from a stream; a short read returns what there was. */
class ExactReader {
  private readonly iterator: AsyncIterator<Buffer>;
  private buffered: Buffer[] = [];
  private length = 0;
  private done = false;

  constructor(private readonly stream: Readable) {
    this.iterator = stream[Symbol.asyncIterator]();
  }

  async take(n: number): Promise<Buffer> {
    while (this.length < n && !this.done) {
      const next = await this.iterator.next();
      if (next.done) this.done = true;
      else {
        this.buffered.push(next.value);
        this.length += next.value.length;
      }
    }
    const all = this.buffered.length === 1 ? this.buffered[0] : Buffer.concat(this.buffered);
    const taken = all.subarray(0, Math.min(n, all.length));
    const rest = all.subarray(taken.length);
    this.buffered = rest.length ? [rest] : [];
    this.length = rest.length;
    return taken;
  }

  async atEnd(): Promise<boolean> {
    return (await this.take(1)).length === 0;
  }

  close(): void {
    this.stream.destroy();
  }
}
