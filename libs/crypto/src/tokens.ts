import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Lowercase hex id: safe inside database names, URLs and token strings. */
export function randomId(bytes = 8): string {
  return randomBytes(bytes).toString('hex');
}

/** 256 bits of entropy, base64url (no '.' so it can sit last in a dotted token). */
export function generateSecret(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Secrets are 256-bit random values, so a single SHA-256 is enough to make a stolen hash
 * useless: there is nothing to brute-force. A slow password hash here would cost a full
 * KDF per request (see the auth benchmark) and buy nothing.
 */
export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

export function secretMatches(secret: string, expectedHash: Buffer): boolean {
  const actual = hashSecret(secret);
  return actual.length === expectedHash.length && timingSafeEqual(actual, expectedHash);
}
