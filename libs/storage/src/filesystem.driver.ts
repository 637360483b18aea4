import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { assertStorageKey, ByteRange, StorageDriver, StorageObjectNotFound } from './storage-driver';

const TEMP_SUFFIX = '.partial';
const READ_BUFFER_BYTES = 1024 * 1024;

/**
 * Objects as files under one directory. A write goes to a temp file beside its target, is
 * flushed to disk, then renamed over it: a crash leaves the old object or the new, plus at
 * worst a `*.partial` file that list() never reports.
 */
export class FilesystemStorageDriver implements StorageDriver {
  readonly kind = 'filesystem';
  private readonly root: string;

  constructor(directory: string) {
    this.root = resolve(directory);
  }

  /** Plain files: whatever the disk does (LUKS, ZFS) is invisible from here. */
  async serverSideEncryption(): Promise<null> {
    return null;
  }

  async ready(): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
  }

  async put(key: string, body: Buffer): Promise<void> {
    const path = this.path(key);
    const created = await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const temp = `${path}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`;
    const file = await open(temp, 'w', 0o600);
    try {
      await file.writeFile(body);
      await file.sync();
    } catch (error) {
      await file.close();
      await rm(temp, { force: true });
      throw error;
    }
    await file.close();
    await rename(temp, path);
    // The rename, and any directory just made, last only once their parent directories are
    // flushed too (ext4 in ordered mode forgives this; XFS and btrfs do not).
    for (let dir = dirname(path); ; dir = dirname(dir)) {
      await syncDirectory(dir);
      if (!created || dir === dirname(created) || dir === dirname(dir)) break;
    }
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    const path = this.path(key);
    const info = await stat(path).catch(() => undefined);
    if (!info?.isFile()) throw new StorageObjectNotFound(key);
    // Reads of a whole chunk (a few MiB) in few large pieces: fewer copies while segments are cut out.
    return createReadStream(path, { highWaterMark: READ_BUFFER_BYTES, ...(range && { start: range.start, end: range.end }) });
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) await rm(this.path(key), { force: true });
  }

  async *list(prefix: string): AsyncIterable<string> {
    // The prefix's directory part is walked; file names are then matched against the rest.
    const base = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    if (base) assertStorageKey(base);
    for await (const file of walk(join(this.root, base))) {
      const key = relative(this.root, file).split(sep).join('/');
      if (key.startsWith(prefix) && !key.endsWith(TEMP_SUFFIX)) yield key;
    }
  }

  private path(key: string): string {
    assertStorageKey(key);
    return join(this.root, ...key.split('/'));
  }
}

async function* walk(dir: string): AsyncIterable<string> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else if (entry.isFile()) yield path;
  }
}

async function syncDirectory(path: string): Promise<void> {
  const dir = await open(path, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
