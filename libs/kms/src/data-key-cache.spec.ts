import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CachingKmsProvider, DataKeyCache, DataKeyCacheLimits } from './data-key-cache';
import { KmsProvider, KmsRequestError } from './kms-provider';

/** A provider that counts unwraps and knows one data key per key name. */
function fakeKms() {
  const calls: string[] = [];
  const keys = new Map([
    ['key-a', Buffer.alloc(32, 0xaa)],
    ['key-b', Buffer.alloc(32, 0xbb)],
  ]);
  const provider = {
    kind: 'local',
    async unwrap(name: string, wrapped: string) {
      calls.push(`unwrap ${name} ${wrapped}`);
      if (!wrapped.startsWith(`local:v1:${name}`)) throw new KmsRequestError('not wrapped under this key', 400);
      return Buffer.from(keys.get(name)!);
    },
    async setMinDecryptionVersion(name: string) {
      calls.push(`min ${name}`);
    },
  } as unknown as KmsProvider;
  return { provider, calls };
}

function setup(limits: Partial<DataKeyCacheLimits> = {}) {
  let now = 1_000_000;
  const cache = new DataKeyCache({ maxAgeMs: 60_000, maxUses: 100, maxEntries: 10, ...limits }, () => now);
  const { provider, calls } = fakeKms();
  return {
    kms: new CachingKmsProvider(provider, cache),
    cache,
    calls,
    advance: (ms: number) => (now += ms),
  };
}

describe('data-key cache', () => {
  test('a second unwrap of the same wrapped key makes no KMS call', async () => {
    const { kms, calls } = setup();
    const first = await kms.unwrap('key-a', 'local:v1:key-a-1');
    const second = await kms.unwrap('key-a', 'local:v1:key-a-1');
    assert.deepEqual(second, first);
    assert.equal(calls.length, 1);
  });

  test('an entry older than the max age is unwrapped again', async () => {
    const { kms, calls, advance } = setup({ maxAgeMs: 60_000 });
    await kms.unwrap('key-a', 'local:v1:key-a-1');
    advance(59_999);
    await kms.unwrap('key-a', 'local:v1:key-a-1');
    assert.equal(calls.length, 1);
    advance(1);
    await kms.unwrap('key-a', 'local:v1:key-a-1');
    assert.equal(calls.length, 2);
  });

  test('an entry serves at most max-uses unwraps, the first included', async () => {
    const { kms, calls } = setup({ maxUses: 3 });
    for (let i = 0; i < 3; i++) await kms.unwrap('key-a', 'local:v1:key-a-1');
    assert.equal(calls.length, 1);
    await kms.unwrap('key-a', 'local:v1:key-a-1');
    assert.equal(calls.length, 2);
  });

  test('the least recently used entry goes first beyond max entries, and is zero-filled', async () => {
    const { kms, cache, calls } = setup({ maxEntries: 2 });
    await kms.unwrap('key-a', 'local:v1:key-a-1');
    const firstEntry = cache['entries'].values().next().value!.plaintext;
    await kms.unwrap('key-a', 'local:v1:key-a-2');
    await kms.unwrap('key-a', 'local:v1:key-a-1'); // now key-a-2 is the least recently used
    await kms.unwrap('key-a', 'local:v1:key-a-3');
    assert.equal(cache.size, 2);
    assert.equal(calls.length, 3);
    await kms.unwrap('key-a', 'local:v1:key-a-1');
    assert.equal(calls.length, 3, 'key-a-1 was kept');
    await kms.unwrap('key-a', 'local:v1:key-a-2');
    assert.equal(calls.length, 4, 'key-a-2 was evicted');
    cache.clear();
    assert.equal(cache.size, 0);
    assert.ok(firstEntry.equals(Buffer.alloc(32)), 'evicted plaintext is zero-filled');
  });

  test('a wrapped key asked for under another key name is not served from the cache', async () => {
    const { kms, calls } = setup();
    await kms.unwrap('key-a', 'local:v1:key-a-1');
    await assert.rejects(kms.unwrap('key-b', 'local:v1:key-a-1'), KmsRequestError);
    assert.equal(calls.length, 2);
  });

  test('callers get copies: zeroing a returned key does not spoil the cache', async () => {
    const { kms } = setup();
    const first = await kms.unwrap('key-a', 'local:v1:key-a-1');
    first.fill(0);
    assert.deepEqual(await kms.unwrap('key-a', 'local:v1:key-a-1'), Buffer.alloc(32, 0xaa));
  });

  test("raising a key's min_decryption_version drops its cached data keys", async () => {
    const { kms, calls } = setup();
    await kms.unwrap('key-a', 'local:v1:key-a-1');
    await kms.unwrap('key-b', 'local:v1:key-b-1');
    await kms.setMinDecryptionVersion('key-a', 2);
    await kms.unwrap('key-a', 'local:v1:key-a-1');
    await kms.unwrap('key-b', 'local:v1:key-b-1');
    assert.deepEqual(calls, [
      'unwrap key-a local:v1:key-a-1',
      'unwrap key-b local:v1:key-b-1',
      'min key-a',
      'unwrap key-a local:v1:key-a-1',
    ]);
  });

  test('max age 0 turns the cache off', async () => {
    const { kms, cache, calls } = setup({ maxAgeMs: 0 });
    await kms.unwrap('key-a', 'local:v1:key-a-1');
    await kms.unwrap('key-a', 'local:v1:key-a-1');
    assert.equal(calls.length, 2);
    assert.equal(cache.size, 0);
  });
});
