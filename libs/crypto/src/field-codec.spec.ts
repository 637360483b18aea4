import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { EncryptedFieldCodec, FieldDecryptionError, FIELD_FORMAT_AES_GCM, PlaintextFieldCodec } from './field-codec';

const ctx = { table: 'users', column: 'email', rowId: 'u1' };
const EMAIL = { table: 'users', column: 'email' };

function codec(keyId = 1, key = randomBytes(32), indexKey = randomBytes(32), older: [number, Buffer][] = []) {
  return new EncryptedFieldCodec({ current: { id: keyId, key }, byId: new Map([...older, [keyId, key]]), indexKey });
}

const decryptError = (error: unknown) => error instanceof FieldDecryptionError && error.code === 'field_decryption_failed';

test('the plaintext field codec round-trips and refuses other formats', () => {
  const plain = new PlaintextFieldCodec();
  assert.equal(plain.open(plain.seal('a@example.com', ctx), ctx), 'a@example.com');
  assert.throws(() => plain.open(Buffer.from([9, 1, 2]), ctx), /unknown format 9/);
  assert.notDeepEqual(plain.index('a@example.com', EMAIL), plain.index('a@example.com', { table: 'users', column: 'other' }));
});

test('the encrypted codec round-trips strings and bytes, with a format-1 prefix and no plaintext inside', () => {
  const c = codec(7);
  const sealed = c.seal('alice@example.com', ctx);
  assert.equal(sealed[0], FIELD_FORMAT_AES_GCM);
  assert.equal(sealed.readUInt32BE(1), 7);
  assert.equal(sealed.includes(Buffer.from('alice@example.com')), false);
  assert.equal(c.open(sealed, ctx), 'alice@example.com');
  const hash = randomBytes(32);
  assert.deepEqual(c.openBytes(c.sealBytes(hash, ctx), ctx), hash);
  assert.notDeepEqual(c.seal('alice@example.com', ctx), sealed, 'a fresh nonce every time');
});

test('a value moved to another row, column or table fails to open', () => {
  const c = codec();
  const sealed = c.seal('alice@example.com', ctx);
  assert.throws(() => c.open(sealed, { ...ctx, rowId: 'u2' }), decryptError);
  assert.throws(() => c.open(sealed, { ...ctx, column: 'display_name' }), decryptError);
  assert.throws(() => c.open(sealed, { ...ctx, table: 'org_settings' }), decryptError);
});

test('a tampered value, a relabelled key id or a value under another key fails to open', () => {
  const key1 = randomBytes(32);
  const c = codec(2, randomBytes(32), randomBytes(32), [[1, key1]]);
  const sealed = c.seal('alice@example.com', ctx);
  const flipped = Buffer.from(sealed);
  flipped[flipped.length - 1] ^= 1;
  assert.throws(() => c.open(flipped, ctx), decryptError);
  const relabelled = Buffer.from(sealed);
  relabelled.writeUInt32BE(1, 1);
  assert.throws(() => c.open(relabelled, ctx), decryptError);
  assert.throws(() => codec(2).open(sealed, ctx), decryptError);
  assert.throws(() => c.open(sealed.subarray(0, 10), ctx), decryptError);
});

test('an older field key still opens what it sealed', () => {
  const key1 = randomBytes(32);
  const old = codec(1, key1).seal('alice@example.com', ctx);
  assert.equal(codec(2, randomBytes(32), randomBytes(32), [[1, key1]]).open(old, ctx), 'alice@example.com');
});

test('the encrypted codec refuses format-0 plaintext, so no one can plant a value', () => {
  const planted = new PlaintextFieldCodec().seal('mallory@example.com', ctx);
  assert.throws(() => codec().open(planted, ctx), decryptError);
});

test('errors name the table and column, never the value or the row', () => {
  const c = codec();
  const sealed = c.seal('alice@example.com', ctx);
  assert.throws(
    () => c.open(sealed, { ...ctx, rowId: 'secret-row' }),
    (error: Error) => !/alice|secret-row/.test(error.message) && /users\.email/.test(error.message),
  );
});

test('the blind index is keyed, deterministic, and distinct per column and per index key', () => {
  const indexKey = randomBytes(32);
  const a = codec(1, randomBytes(32), indexKey);
  const b = codec(2, randomBytes(32), indexKey);
  assert.deepEqual(a.index('a@example.com', EMAIL), b.index('a@example.com', EMAIL), 'the field key does not enter the index');
  assert.notDeepEqual(a.index('a@example.com', EMAIL), a.index('b@example.com', EMAIL));
  assert.notDeepEqual(a.index('a@example.com', EMAIL), a.index('a@example.com', { table: 'users', column: 'other' }));
  assert.notDeepEqual(a.index('a@example.com', EMAIL), codec(1, randomBytes(32), randomBytes(32)).index('a@example.com', EMAIL));
  assert.notDeepEqual(a.index('a@example.com', EMAIL), new PlaintextFieldCodec().index('a@example.com', EMAIL));
});
