import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { FilesystemStorageDriver } from './filesystem.driver';
import { chunkKey, layoutFor, ObjectIntegrityError, ObjectTooLarge, SealedObjectReader, writeSealedObject } from './sealed-object';

const layout = layoutFor(1024, 4096); // 4 segments per chunk

async function withStore(fn: (driver: FilesystemStorageDriver) => Promise<void>) {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-sealed-'));
  try {
    await fn(new FilesystemStorageDriver(dir));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function* pieces(data: Buffer, size = 700) {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function readBack(driver: FilesystemStorageDriver, ref: { orgId: string; objectId: string }, dek: Buffer, size: number, range?: { start: number; end: number }) {
  const reader = await SealedObjectReader.open(driver, ref, dek, size);
  const out: Buffer[] = [];
  for await (const part of reader.read(range)) out.push(part);
  return Buffer.concat(out);
}

test('sealed objects read back byte for byte at sizes around segment and chunk edges (filesystem driver)', () =>
  withStore(async (driver) => {
    const dek = randomBytes(32);
    for (const size of [0, 1, 1023, 1024, 1025, 4096, 4097, 10_000]) {
      const ref = { orgId: 'org1', objectId: `obj${size}` };
      const data = randomBytes(size);
      const manifest = await writeSealedObject(driver, ref, dek, pieces(data), { layout, maxBytes: 1e6 });
      assert.equal(manifest.size, size);
      assert.equal(manifest.chunks, Math.ceil(Math.max(1, Math.ceil(size / 1024)) / 4));
      assert.deepEqual(await readBack(driver, ref, dek, size), data, `size ${size}`);
    }
  }));

test('ranges return exactly the requested bytes, across segment and chunk boundaries', () =>
  withStore(async (driver) => {
    const dek = randomBytes(32);
    const ref = { orgId: 'org1', objectId: 'ranges' };
    const data = randomBytes(10_000);
    await writeSealedObject(driver, ref, dek, pieces(data), { layout, maxBytes: 1e6 });
    for (const [start, end] of [[0, 0], [1023, 1024], [4000, 4200], [5000, 9999], [9999, 9999], [0, 9999], [2048, 3071]]) {
      assert.deepEqual(await readBack(driver, ref, dek, data.length, { start, end }), data.subarray(start, end + 1), `${start}-${end}`);
    }
  }));

test('an object over the limit is refused while streaming', () =>
  withStore(async (driver) => {
    await assert.rejects(
      writeSealedObject(driver, { orgId: 'o', objectId: 'big' }, randomBytes(32), pieces(randomBytes(5000)), { layout, maxBytes: 4999 }),
      ObjectTooLarge,
    );
  }));

test('a wrong DEK, another org id or another object id does not open the object', () =>
  withStore(async (driver) => {
    const dek = randomBytes(32);
    const ref = { orgId: 'org1', objectId: 'x' };
    await writeSealedObject(driver, ref, dek, pieces(randomBytes(3000)), { layout, maxBytes: 1e6 });
    await assert.rejects(readBack(driver, ref, randomBytes(32), 3000), ObjectIntegrityError);
    // Same bytes copied under another object's keys: the ids are bound into key and AAD.
    for (const other of [{ orgId: 'org2', objectId: 'x' }, { orgId: 'org1', objectId: 'y' }]) {
      for await (const key of driver.list('orgs/org1/packages/x/')) {
        const bytes = await readStream(await driver.get(key));
        await driver.put(key.replace('orgs/org1/packages/x/', `orgs/${other.orgId}/packages/${other.objectId}/`), bytes);
      }
      await assert.rejects(readBack(driver, other, dek, 3000), ObjectIntegrityError);
    }
  }));

test('a reader stops before the first segment that fails: earlier segments are released, nothing after', () =>
  withStore(async (driver) => {
    const dek = randomBytes(32);
    const ref = { orgId: 'org1', objectId: 'flip' };
    const data = randomBytes(10_000);
    await writeSealedObject(driver, ref, dek, pieces(data), { layout, maxBytes: 1e6 });
    const chunk1 = await readStream(await driver.get(chunkKey(ref, 1)));
    chunk1[1040 + 5] ^= 1; // segment 5 (chunk 1, second segment)
    await driver.put(chunkKey(ref, 1), chunk1);
    const reader = await SealedObjectReader.open(driver, ref, dek, data.length);
    const released: Buffer[] = [];
    await assert.rejects(async () => {
      for await (const part of reader.read()) released.push(part);
    }, ObjectIntegrityError);
    assert.deepEqual(Buffer.concat(released), data.subarray(0, 5 * 1024));
  }));

/** The filesystem driver, its reads handed over in pieces of `size` bytes (as a network stream would). */
function inPieces(driver: FilesystemStorageDriver, size: number): FilesystemStorageDriver {
  return Object.assign(Object.create(driver), {
    async get(key: string, range?: { start: number; end: number }) {
      const bytes = await readStream(await driver.get(key, range));
      return Readable.from(pieces(bytes, size), { objectMode: false });
    },
  });
}

test('segments split across stream pieces read back exactly, and one that fails is still never released', () =>
  withStore(async (driver) => {
    const dek = randomBytes(32);
    const ref = { orgId: 'org1', objectId: 'split' };
    const data = randomBytes(10_000);
    await writeSealedObject(driver, ref, dek, pieces(data), { layout, maxBytes: 1e6 });
    for (const size of [1, 7, 700, 1040, 1041, 3000]) {
      const split = inPieces(driver, size);
      assert.deepEqual(await readBack(split, ref, dek, data.length), data, `pieces of ${size}`);
      assert.deepEqual(await readBack(split, ref, dek, data.length, { start: 1000, end: 6000 }), data.subarray(1000, 6001), `range, pieces of ${size}`);
    }
    const chunk1 = await readStream(await driver.get(chunkKey(ref, 1)));
    chunk1[2 * 1040 - 3] ^= 1; // segment 5's tag; the segment straddles two 1041-byte pieces
    await driver.put(chunkKey(ref, 1), chunk1);
    const reader = await SealedObjectReader.open(inPieces(driver, 1041), ref, dek, data.length);
    const released: Buffer[] = [];
    await assert.rejects(async () => {
      for await (const part of reader.read()) released.push(part);
    }, ObjectIntegrityError);
    assert.deepEqual(Buffer.concat(released), data.subarray(0, 5 * 1024));
  }));

async function readStream(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}
