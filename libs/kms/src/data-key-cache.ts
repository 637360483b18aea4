import { DataKey, KmsHealth, KmsKeyInfo, KmsKeyType, KmsProvider, KmsPublicKey, WrappedKey } from './kms-provider';

export interface DataKeyCacheLimits {
  /** An entry is dropped this long after it was unwrapped (0 disables the cache). */
  maxAgeMs: number;
  /** An entry is dropped once it has served this many unwraps (the first one included). */
  maxUses: number;
  /** Entries held at once; the least recently used goes first. */
  maxEntries: number;
}

interface Entry {
  plaintext: Buffer;
  expiresAt: number;
  uses: number;
}

/**
 * Unwrapped data keys in process memory, in the manner of the AWS Encryption SDK's caching
 * cryptographic materials manager: every entry has a maximum age and a maximum number of uses,
 * and the cache a maximum size, so a key copied out of memory is valid for a bounded time and
 * the KMS still sees (and audits) a steady trickle of unwraps. Entries are keyed by key name
 * and wrapped value together: a wrapped DEK presented under another key name is a miss and
 * goes to the KMS, which refuses it. Evicted plaintext is zero-filled.
 */
export class DataKeyCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly limits: DataKeyCacheLimits,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** A copy of the cached plaintext (counted as one use), or undefined. */
  get(keyName: string, wrapped: string): Buffer | undefined {
    const id = cacheId(keyName, wrapped);
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    if (this.now() >= entry.expiresAt || entry.uses >= this.limits.maxUses) {
      this.evict(id, entry);
      return undefined;
    }
    entry.uses += 1;
    const copy = Buffer.from(entry.plaintext);
    this.entries.delete(id); // re-insert: Map order is our LRU order
    if (entry.uses >= this.limits.maxUses) entry.plaintext.fill(0);
    else this.entries.set(id, entry);
    return copy;
  }

  /** Keeps a copy of `plaintext`, which has just served its first use. */
  put(keyName: string, wrapped: string, plaintext: Buffer): void {
    if (this.limits.maxAgeMs <= 0 || this.limits.maxEntries <= 0 || this.limits.maxUses <= 1) return;
    const id = cacheId(keyName, wrapped);
    const previous = this.entries.get(id);
    if (previous) this.evict(id, previous);
    this.entries.set(id, { plaintext: Buffer.from(plaintext), expiresAt: this.now() + this.limits.maxAgeMs, uses: 1 });
    for (const [oldest, entry] of this.entries) {
      if (this.entries.size <= this.limits.maxEntries) break;
      this.evict(oldest, entry);
    }
  }

  /** Drops every entry of one key (after its min_decryption_version changed). */
  evictKey(keyName: string): void {
    const prefix = cacheId(keyName, '');
    for (const [id, entry] of this.entries) if (id.startsWith(prefix)) this.evict(id, entry);
  }

  clear(): void {
    for (const [id, entry] of this.entries) this.evict(id, entry);
  }

  private evict(id: string, entry: Entry): void {
    entry.plaintext.fill(0);
    this.entries.delete(id);
  }
}

const cacheId = (keyName: string, wrapped: string) => `${keyName}\u0000${wrapped}`;

/**
 * A provider whose `unwrap` is served from a DataKeyCache, so reading data whose DEK was
 * unwrapped recently makes no KMS call (and keeps working through a short KMS outage).
 * Everything else goes straight to the provider.
 */
export class CachingKmsProvider implements KmsProvider {
  constructor(
    private readonly provider: KmsProvider,
    readonly cache: DataKeyCache,
  ) {}

  get kind(): KmsProvider['kind'] {
    return this.provider.kind;
  }

  async unwrap(name: string, wrapped: string): Promise<Buffer> {
    const cached = this.cache.get(name, wrapped);
    if (cached) return cached;
    const plaintext = await this.provider.unwrap(name, wrapped);
    this.cache.put(name, wrapped, plaintext);
    return plaintext;
  }

  async setMinDecryptionVersion(name: string, version: number): Promise<void> {
    await this.provider.setMinDecryptionVersion(name, version);
    // Older versions must stop unwrapping here too, not only once their entries expire.
    this.cache.evictKey(name);
  }

  health(): Promise<KmsHealth> {
    return this.provider.health();
  }
  ensureKey(name: string, type?: KmsKeyType): Promise<void> {
    return this.provider.ensureKey(name, type);
  }
  keyInfo(name: string): Promise<KmsKeyInfo> {
    return this.provider.keyInfo(name);
  }
  rotate(name: string): Promise<number> {
    return this.provider.rotate(name);
  }
  wrap(name: string, plaintext: Buffer): Promise<WrappedKey> {
    return this.provider.wrap(name, plaintext);
  }
  generateDataKey(name: string): Promise<DataKey> {
    return this.provider.generateDataKey(name);
  }
  rewrap(name: string, wrapped: string): Promise<WrappedKey> {
    return this.provider.rewrap(name, wrapped);
  }
  sign(name: string, data: Buffer): Promise<string> {
    return this.provider.sign(name, data);
  }
  verify(name: string, data: Buffer, signature: string): Promise<boolean> {
    return this.provider.verify(name, data, signature);
  }
  publicKeys(name: string): Promise<KmsPublicKey[]> {
    return this.provider.publicKeys(name);
  }
}
