import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateSecret, hashSecret, randomId, secretMatches } from './tokens';

test('a secret matches only its own hash', () => {
  const secret = generateSecret();
  const hash = hashSecret(secret);
  assert.equal(secretMatches(secret, hash), true);
  assert.equal(secretMatches(generateSecret(), hash), false);
  assert.equal(secretMatches(secret, hash.subarray(1)), false);
});

test('secrets and ids never repeat and use a safe alphabet', () => {
  const secrets = new Set(Array.from({ length: 1000 }, generateSecret));
  assert.equal(secrets.size, 1000);
  for (const s of secrets) assert.match(s, /^[A-Za-z0-9_-]{43}$/);
  assert.match(randomId(), /^[0-9a-f]{16}$/);
});
