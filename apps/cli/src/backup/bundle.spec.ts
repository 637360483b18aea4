import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandRefused } from '../usage-error';
import { BundleWriter, CHUNK_BYTES, MAGIC, readBundle } from './bundle';

const secret = Buffer.from('correct horse battery staple');

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-bundle-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A bundle of three parts, one of them spanning several chunks; its parts as written. */
async function writeBundle(path: string) {
  const writer = await BundleWriter.create(path, secret);
  const big = randomBytes(CHUNK_BYTES * 2 + 12345);
  const parts = { 'databases/control.dump': big, 'state/tls/ca.key': Buffer.from('-----BEGIN PRIVATE KEY-----'), 'empty': Buffer.alloc(0) };
  for (const [name, bytes] of Object.entries(parts)) {
    await writer.beginPart(name);
    for (let i = 0; i < bytes.length; i += 100_000) await writer.write(bytes.subarray(i, i + 100_000));
    writer.endPart();
  }
  const sha256 = await writer.finish({ parts: writer.parts });
  return { parts, sha256 };
}

async function readAll(path: string, key = secret) {
  const parts: Record<string, Buffer[]> = {};
  let current = '';
  let manifest: unknown;
  for await (const record of readBundle(path, key)) {
    if (record.kind === 'part') parts[(current = record.name)] = [];
    else if (record.kind === 'data') parts[current].push(record.bytes);
    else manifest = record.manifest;
  }
  return { parts: Object.fromEntries(Object.entries(parts).map(([n, b]) => [n, Buffer.concat(b)])), manifest };
}

test('a bundle reads back part for part, byte for byte, with its manifest; nothing of the content is in the file in clear', () =>
  withDir(async (dir) => {
    const path = join(dir, 'b.coffer-backup');
    const { parts, sha256 } = await writeBundle(path);
    const file = readFileSync(path);
    assert.equal(createHash('sha256').update(file).digest('hex'), sha256);
    assert.ok(file.subarray(0, MAGIC.length).equals(MAGIC));
    assert.equal(file.indexOf('BEGIN PRIVATE KEY'), -1);
    assert.equal(file.indexOf('state/tls'), -1);
    const read = await readAll(path);
    assert.deepEqual(Object.keys(read.parts), Object.keys(parts));
    for (const [name, bytes] of Object.entries(parts)) assert.ok(read.parts[name].equals(bytes), name);
    const listed = (read.manifest as { parts: { name: string; size: number; sha256: string }[] }).parts;
    assert.deepEqual(listed.map((p) => [p.name, p.size, p.sha256]), Object.entries(parts).map(([n, b]) => [n, b.length, createHash('sha256').update(b).digest('hex')]));
  }));

test('a wrong passphrase is refused as such, before any record is read', () =>
  withDir(async (dir) => {
    const path = join(dir, 'b');
    await writeBundle(path);
    await assert.rejects(readAll(path, Buffer.from('not the passphrase at all')), (error: Error) => {
      assert.ok(error instanceof CommandRefused);
      assert.match(error.message, /passphrase \(or key file\) does not open the bundle/);
      return true;
    });
  }));

test('one flipped byte anywhere (header, first, middle or last chunk), a truncation, a dropped chunk or trailing bytes are refused as damage', () =>
  withDir(async (dir) => {
    const path = join(dir, 'b');
    await writeBundle(path);
    const good = readFileSync(path);
    const headerEnd = MAGIC.length + 4 + good.readUInt32BE(MAGIC.length);
    const record = CHUNK_BYTES + 16;
    const variants: [string, Buffer][] = [
      ['header byte (the salt)', flip(good, good.indexOf('"salt":"') + 10)],
      ['header byte (chunk size)', flip(good, good.indexOf('"chunkBytes":') + 13)],
      ['first chunk', flip(good, headerEnd + 5)],
      ['middle chunk', flip(good, headerEnd + record + 777)],
      ['last tag', flip(good, good.length - 1)],
      ['truncated at a chunk boundary', good.subarray(0, headerEnd + 2 * record)],
      ['truncated mid-chunk', good.subarray(0, good.length - 100)],
      ['a chunk dropped', Buffer.concat([good.subarray(0, headerEnd + record), good.subarray(headerEnd + 2 * record)])],
      ['bytes appended', Buffer.concat([good, Buffer.from('x')])],
    ];
    for (const [what, bytes] of variants) {
      writeFileSync(path, bytes);
      await assert.rejects(readAll(path), (error: Error) => {
        assert.ok(error instanceof CommandRefused, `${what}: ${error}`);
        assert.match(error.message, /damaged or has been tampered with|does not open the bundle/, what);
        return true;
      }, what);
    }
  }));

function flip(bytes: Buffer, at: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[at] ^= 0x01;
  return copy;
}
