import { createCipheriv, createDecipheriv, createHash, Hash, randomBytes, scrypt as scryptCallback, timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { FileHandle, open } from 'node:fs/promises';
import { CommandRefused } from '../usage-error';

/**
 * The backup bundle's container (docs/adr/0012-backup.md): one file, encrypted and authenticated
 * in chunks, written and read as a stream in bounded memory.
 *
 *   file      = MAGIC | u32 header length | header JSON | sealed chunk*
 *   chunk     = AES-256-GCM(key, nonce = 11-byte counter | final flag, aad = MAGIC..header JSON)
 *               of CHUNK_BYTES of plaintext (the last one shorter, flagged final) | 16-byte tag
 *   plaintext = frame*, the last one the manifest
 *   frame     = u8 type ('P' part begins: JSON {name} | 'D' the part's bytes | 'M' manifest JSON)
 *               | u32 length | payload
 *
 * The key is scrypt(secret, header.kdf.salt): 32 bytes of key, 32 of key check (whose hash the
 * header carries, so that a wrong passphrase is told apart from a damaged bundle). The counter
 * and the final flag in the nonce make reordered, dropped or truncated chunks fail to open;
 * the header as AAD binds its parameters. Every part's sha256 is in the manifest.
 */
export const MAGIC = Buffer.from('CFRBKP01', 'ascii');
export const CHUNK_BYTES = 1024 * 1024;
const TAG_BYTES = 16;
const DATA_FRAME_BYTES = 1024 * 1024;
const MAX_META_FRAME_BYTES = 512 * 1024 * 1024;
const MAX_HEADER_BYTES = 64 * 1024;
const SCRYPT = { N: 2 ** 17, r: 8, p: 1 };
const FRAME = { part: 0x50, data: 0x44, manifest: 0x4d } as const;

export interface BundleHeader {
  format: 'coffer-backup';
  version: 1;
  cipher: 'AES-256-GCM';
  chunkBytes: number;
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  keyCheck: string;
}

export interface PartInfo {
  name: string;
  size: number;
  sha256: string;
}

/** The secret a bundle is sealed under: COFFER_BACKUP_PASSPHRASE, or a key file's content. */
export async function backupSecret(keyFile: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<Buffer> {
  if (keyFile) {
    const handle = await open(keyFile, 'r').catch((error: NodeJS.ErrnoException) => {
      throw new CommandRefused(`cannot read the key file ${keyFile}: ${error.code ?? error.message}`);
    });
    try {
      const secret = Buffer.from((await handle.readFile('utf8')).trim(), 'utf8');
      if (secret.length < 16) throw new CommandRefused(`the key file ${keyFile} holds fewer than 16 bytes: too short to be a key`);
      return secret;
    } finally {
      await handle.close();
    }
  }
  const passphrase = env.COFFER_BACKUP_PASSPHRASE;
  if (!passphrase) throw new CommandRefused('set COFFER_BACKUP_PASSPHRASE (or give --key-file <file>): the bundle is encrypted under it');
  if (passphrase.length < 12) throw new CommandRefused('COFFER_BACKUP_PASSPHRASE is shorter than 12 characters');
  return Buffer.from(passphrase, 'utf8');
}

function deriveKeys(secret: Buffer, kdf: BundleHeader['kdf']): Promise<{ key: Buffer; check: Buffer }> {
  return new Promise((resolve, reject) =>
    scryptCallback(secret, Buffer.from(kdf.salt, 'base64'), 64, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * 1024 * 1024 }, (error, derived) => {
      if (error) return reject(error);
      resolve({ key: derived.subarray(0, 32), check: createHash('sha256').update(derived.subarray(32)).digest().subarray(0, 16) });
    }),
  );
}

function nonce(counter: number, final: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeUIntBE(counter, 5, 6); // 2^48 chunks of 1 MiB: more than any bundle
  n[11] = final ? 1 : 0;
  return n;
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

/** Writes a bundle: parts one after the other, then the manifest. Nothing is buffered beyond a chunk. */
export class BundleWriter {
  private plain: Buffer[] = [];
  private plainBytes = 0;
  private counter = 0;
  private part?: { name: string; size: number; hash: Hash };
  readonly parts: PartInfo[] = [];
  /** The file's own sha256 and size, for checking copies of it. */
  private readonly fileHash = createHash('sha256');
  bytesWritten = 0;

  private constructor(
    private readonly file: FileHandle,
    private readonly key: Buffer,
    private readonly aad: Buffer,
  ) {}

  static async create(path: string, secret: Buffer): Promise<BundleWriter> {
    const kdf = { name: 'scrypt' as const, ...SCRYPT, salt: randomBytes(16).toString('base64') };
    const { key, check } = await deriveKeys(secret, kdf);
    const header: BundleHeader = { format: 'coffer-backup', version: 1, cipher: 'AES-256-GCM', chunkBytes: CHUNK_BYTES, kdf, keyCheck: check.toString('base64') };
    const json = Buffer.from(JSON.stringify(header), 'utf8');
    const aad = Buffer.concat([MAGIC, u32(json.length), json]);
    const file = await open(path, 'wx', 0o600);
    await file.write(aad);
    const writer = new BundleWriter(file, key, aad);
    writer.bytesWritten = aad.length;
    writer.fileHash.update(aad);
    return writer;
  }

  async beginPart(name: string): Promise<void> {
    if (this.part) throw new Error(`part ${this.part.name} is still open`);
    if (this.parts.some((p) => p.name === name)) throw new Error(`part ${name} twice`);
    this.part = { name, size: 0, hash: createHash('sha256') };
    await this.frame(FRAME.part, Buffer.from(JSON.stringify({ name }), 'utf8'));
  }

  async write(bytes: Buffer): Promise<void> {
    if (!this.part) throw new Error('no part is open');
    this.part.size += bytes.length;
    this.part.hash.update(bytes);
    for (let i = 0; i < bytes.length; i += DATA_FRAME_BYTES) await this.frame(FRAME.data, bytes.subarray(i, i + DATA_FRAME_BYTES));
  }

  endPart(): PartInfo {
    if (!this.part) throw new Error('no part is open');
    const info = { name: this.part.name, size: this.part.size, sha256: this.part.hash.digest('hex') };
    this.parts.push(info);
    this.part = undefined;
    return info;
  }

  async writePart(name: string, source: AsyncIterable<Buffer | string> | Buffer): Promise<PartInfo> {
    await this.beginPart(name);
    if (Buffer.isBuffer(source)) await this.write(source);
    else for await (const piece of source) await this.write(Buffer.isBuffer(piece) ? piece : Buffer.from(piece));
    return this.endPart();
  }

  /** The manifest, the last chunk (flagged final), then the file flushed to disk; the file's sha256. */
  async finish(manifest: unknown): Promise<string> {
    if (this.part) throw new Error(`part ${this.part.name} is still open`);
    await this.frame(FRAME.manifest, Buffer.from(JSON.stringify(manifest), 'utf8'));
    await this.seal(Buffer.concat(this.plain), true);
    this.plain = [];
    await this.file.sync();
    await this.file.close();
    this.key.fill(0);
    return this.fileHash.digest('hex');
  }

  /** Closes the file after a failure (the caller removes it). */
  async abort(): Promise<void> {
    await this.file.close().catch(() => undefined);
    this.key.fill(0);
  }

  private async frame(type: number, payload: Buffer): Promise<void> {
    const head = Buffer.alloc(5);
    head[0] = type;
    head.writeUInt32BE(payload.length, 1);
    this.plain.push(head, payload);
    this.plainBytes += head.length + payload.length;
    // A chunk is sealed only once more bytes follow it: the final one is sealed by finish().
    while (this.plainBytes > CHUNK_BYTES) {
      const all = Buffer.concat(this.plain);
      await this.seal(all.subarray(0, CHUNK_BYTES), false);
      const rest = all.subarray(CHUNK_BYTES);
      this.plain = [rest];
      this.plainBytes = rest.length;
    }
  }

  private async seal(plaintext: Buffer, final: boolean): Promise<void> {
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce(this.counter++, final)).setAAD(this.aad);
    const sealed = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    await this.file.write(sealed);
    this.fileHash.update(sealed);
    this.bytesWritten += sealed.length;
  }
}

/** What reading a bundle yields, in order: each part's start and bytes, then the manifest. */
export type BundleRecord = { kind: 'part'; name: string } | { kind: 'data'; bytes: Buffer } | { kind: 'manifest'; manifest: unknown };

/**
 * Reads a bundle, opening each chunk as it comes: a record is yielded only from authenticated
 * plaintext. Refuses (CommandRefused) a wrong secret, a chunk that fails to open, a truncated
 * file, and anything after the manifest. `onBytes` counts the file's bytes read, for progress.
 */
export async function* readBundle(path: string, secret: Buffer, onBytes?: (n: number) => void): AsyncGenerator<BundleRecord> {
  const damaged = (what: string) => new CommandRefused(`the bundle ${path} is damaged or has been tampered with (${what}); nothing was changed`);
  const stream = createReadStream(path, { highWaterMark: CHUNK_BYTES + TAG_BYTES });
  let buffered: Buffer[] = [];
  let bufferedBytes = 0;
  const take = (n: number): Buffer => {
    const all = Buffer.concat(buffered);
    buffered = [all.subarray(n)];
    bufferedBytes = all.length - n;
    return all.subarray(0, n);
  };
  let header: BundleHeader | undefined;
  let aad: Buffer | undefined;
  let key: Buffer | undefined;
  let counter = 0;
  const frames = new FrameParser(damaged);
  const open = function* (sealed: Buffer, final: boolean) {
    const decipher = createDecipheriv('aes-256-gcm', key!, nonce(counter, final)).setAAD(aad!);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    let plaintext: Buffer;
    try {
      plaintext = Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()]);
    } catch {
      throw damaged(`chunk ${counter} fails authentication${final ? ', or the file is truncated' : ''}`);
    }
    counter++;
    yield* frames.push(plaintext);
  };
  try {
    for await (const piece of stream as AsyncIterable<Buffer>) {
      onBytes?.(piece.length);
      buffered.push(piece);
      bufferedBytes += piece.length;
      if (!header) {
        if (bufferedBytes < MAGIC.length + 4) continue;
        const start = Buffer.concat(buffered);
        if (!start.subarray(0, MAGIC.length).equals(MAGIC)) throw new CommandRefused(`${path} is not a Coffer backup bundle`);
        const length = start.readUInt32BE(MAGIC.length);
        if (length > MAX_HEADER_BYTES) throw damaged('header too long');
        if (start.length < MAGIC.length + 4 + length) continue;
        aad = take(MAGIC.length + 4 + length);
        header = parseHeader(aad.subarray(MAGIC.length + 4), damaged);
        const derived = await deriveKeys(secret, header.kdf);
        const expected = Buffer.from(header.keyCheck, 'base64');
        if (expected.length !== derived.check.length || !timingSafeEqual(expected, derived.check)) {
          throw new CommandRefused(`the passphrase (or key file) does not open the bundle ${path}; nothing was changed`);
        }
        key = derived.key;
      }
      // A chunk is opened once more bytes follow it; the last one at the end of the file.
      const record = header.chunkBytes + TAG_BYTES;
      while (bufferedBytes > record) yield* open(take(record), false);
    }
    if (!header) throw damaged('no header');
    if (bufferedBytes < TAG_BYTES) throw damaged('truncated');
    yield* open(take(bufferedBytes), true);
    if (!frames.done) throw damaged('no manifest');
    if (frames.leftover) throw damaged('bytes after the manifest');
  } finally {
    key?.fill(0);
    stream.destroy();
  }
}

function parseHeader(json: Buffer, damaged: (what: string) => Error): BundleHeader {
  let header: BundleHeader;
  try {
    header = JSON.parse(json.toString('utf8'));
  } catch {
    throw damaged('unreadable header');
  }
  const { kdf } = header ?? {};
  const sane =
    header?.format === 'coffer-backup' &&
    header.version === 1 &&
    header.cipher === 'AES-256-GCM' &&
    Number.isInteger(header.chunkBytes) && header.chunkBytes > 0 && header.chunkBytes <= 64 * 1024 * 1024 &&
    kdf?.name === 'scrypt' &&
    // Bounds keep a crafted header from asking for gigabytes of scrypt memory.
    Number.isInteger(kdf.N) && kdf.N >= 2 ** 14 && kdf.N <= 2 ** 20 && kdf.r === 8 && kdf.p >= 1 && kdf.p <= 4 &&
    typeof kdf.salt === 'string' && typeof header.keyCheck === 'string';
  if (!sane) throw damaged('unknown header format or parameters');
  return header;
}

/** Splits authenticated plaintext into frames; holds at most one frame's bytes. */
class FrameParser {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private inPart = false;
  done = false;

  get leftover(): number {
    return this.pendingBytes;
  }

  constructor(private readonly damaged: (what: string) => Error) {}

  *push(plaintext: Buffer): Generator<BundleRecord> {
    this.pending.push(plaintext);
    this.pendingBytes += plaintext.length;
    while (this.pendingBytes >= 5) {
      const all = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending);
      this.pending = [all];
      const type = all[0];
      const length = all.readUInt32BE(1);
      if (this.done) throw this.damaged('bytes after the manifest');
      if (type !== FRAME.data && length > MAX_META_FRAME_BYTES) throw this.damaged('frame too long');
      if (all.length < 5 + length) return;
      const payload = all.subarray(5, 5 + length);
      const rest = all.subarray(5 + length);
      this.pending = [rest];
      this.pendingBytes = rest.length;
      if (type === FRAME.part) {
        this.inPart = true;
        yield { kind: 'part', name: this.json<{ name: string }>(payload).name };
      } else if (type === FRAME.data) {
        if (!this.inPart) throw this.damaged('data outside a part');
        yield { kind: 'data', bytes: Buffer.from(payload) };
      } else if (type === FRAME.manifest) {
        this.done = true;
        yield { kind: 'manifest', manifest: this.json(payload) };
      } else {
        throw this.damaged(`unknown frame type ${type}`);
      }
    }
  }

  private json<T>(payload: Buffer): T {
    try {
      return JSON.parse(payload.toString('utf8'));
    } catch {
      throw this.damaged('unreadable frame');
    }
  }
}
