import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, KeyObject } from 'node:crypto';
import { aeadOpen, aeadSeal } from '@coffer/crypto';

/** DER prefixes of an X25519 key (RFC 8410): PKCS#8 private, SPKI public, then 32 raw bytes. */
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');
const KEY_BYTES = 32;

/** A sealed DEK that does not open: tampered, moved to another row or org, or another spool key's. */
export class SpoolIntegrityError extends Error {
  readonly code = 'spool_integrity_failed';
  constructor() {
    super('the spooled data key does not authenticate');
  }
}

/** Where a sealed DEK belongs: it opens only for this org's row. */
export interface SpoolBinding {
  orgId: string;
  rowId: string;
}

/** The X25519 private key whose scalar is `secret` (a KMS data key's plaintext, 32 bytes). */
export function spoolPrivateKey(secret: Buffer): KeyObject {
  if (secret.length !== KEY_BYTES) throw new Error('a spool private key is 32 bytes');
  const der = Buffer.concat([PKCS8_X25519, secret]);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    der.fill(0);
  }
}

/** The raw 32-byte public key of an X25519 private key. */
export function spoolPublicKey(privateKey: KeyObject): Buffer {
  return Buffer.from(createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(-KEY_BYTES));
}

/**
 * ECIES to the spool key: a fresh ephemeral X25519 key agrees a secret with the spool public
 * key; HKDF-SHA256 (salt: both public keys; info: org and row) turns it into an AES-256-GCM key
 * that seals `dek`. Result: `spool:<keyId>:<base64(ephemeral public || nonce || ciphertext || tag)>`.
 * Needs no KMS; only the holder of the spool private key (a KMS data key) can open it.
 */
export function sealToSpool(keyId: string, publicKey: Buffer, binding: SpoolBinding, dek: Buffer): string {
  const recipient = createPublicKey({ key: Buffer.concat([SPKI_X25519, publicKey]), format: 'der', type: 'spki' });
  const ephemeral = generateKeyPairSync('x25519');
  const ephemeralPublic = spoolPublicKey(ephemeral.privateKey);
  const key = deriveKey(diffieHellman({ privateKey: ephemeral.privateKey, publicKey: recipient }), ephemeralPublic, publicKey, binding);
  try {
    const sealed = aeadSeal(key, dek, associatedData(keyId, binding));
    return `${prefix(keyId)}${Buffer.concat([ephemeralPublic, sealed]).toString('base64')}`;
  } finally {
    key.fill(0);
  }
}

/** The DEK `sealed` holds, or SpoolIntegrityError: nothing that did not authenticate is returned. */
export function openFromSpool(keyId: string, privateKey: KeyObject, binding: SpoolBinding, sealed: string): Buffer {
  if (!sealed.startsWith(prefix(keyId))) throw new SpoolIntegrityError();
  const body = Buffer.from(sealed.slice(prefix(keyId).length), 'base64');
  if (body.length < KEY_BYTES + 12 + 16) throw new SpoolIntegrityError();
  const ephemeralPublic = body.subarray(0, KEY_BYTES);
  let key: Buffer | undefined;
  try {
    const ephemeral = createPublicKey({ key: Buffer.concat([SPKI_X25519, ephemeralPublic]), format: 'der', type: 'spki' });
    key = deriveKey(diffieHellman({ privateKey, publicKey: ephemeral }), ephemeralPublic, spoolPublicKey(privateKey), binding);
    return aeadOpen(key, body.subarray(KEY_BYTES), associatedData(keyId, binding));
  } catch {
    throw new SpoolIntegrityError();
  } finally {
    key?.fill(0);
  }
}

/** Whether a stored DEK is spool-sealed (not yet wrapped by the KMS). */
export const isSpoolSealed = (value: string) => value.startsWith('spool:');

const prefix = (keyId: string) => `spool:${keyId}:`;
const associatedData = (keyId: string, { orgId, rowId }: SpoolBinding) => `coffer-spool-v1\0${keyId}\0${orgId}\0${rowId}`;

function deriveKey(shared: Buffer, ephemeralPublic: Buffer, recipientPublic: Buffer, { orgId, rowId }: SpoolBinding): Buffer {
  try {
    const salt = Buffer.concat([ephemeralPublic, recipientPublic]);
    return Buffer.from(hkdfSync('sha256', shared, salt, `coffer-spool-v1\0${orgId}\0${rowId}`, KEY_BYTES));
  } finally {
    shared.fill(0);
  }
}
