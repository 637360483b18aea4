import { createPublicKey, verify as edVerify } from 'node:crypto';

/**
 * The signed formats of the audit trail, with nothing but node:crypto: what Coffer signs with
 * the KMS and what anyone holding the public keys checks offline (docs/audit-verification.md).
 */

/** One signing key per chain, so that one org's checkpoints cannot vouch for another's. */
export function checkpointKeyName(chainId: string): string {
  return `coffer-audit-${chainId}`;
}

/** What a checkpoint signs: the chain, a sequence number and the hash of the chain up to it. */
export function checkpointData(chainId: string, seq: number, hash: Buffer): Buffer {
  return Buffer.from(`coffer-audit-checkpoint\0${chainId}\0${seq}\0${hash.toString('hex')}`);
}

/**
 * A checkpoint as written outside PostgreSQL (`anchors/<chain>/<seq>.json` in the storage
 * backend, and inside each delivery digest): a signed tree head. `signature` is the KMS's
 * `<local|vault>:v<version>:<base64 ed25519 signature>` over checkpointData(chain, seq, hash);
 * `signedAt` is when it was made and is not itself signed.
 */
export interface AuditAnchor {
  format: 'coffer-audit-anchor/1';
  chain: string;
  seq: number;
  /** The chain's hash at `seq`, hex. */
  hash: string;
  signedAt: string;
  keyName: string;
  keyVersion: number;
  signature: string;
}

/** A public key of a chain's signing key, as GET /api/v1/audit/keys and the digests publish it. */
export interface AuditPublicKey {
  keyName: string;
  version: number;
  algorithm: 'ed25519';
  /** The raw 32-byte key, base64. */
  publicKey: string;
  createdAt: string;
}

/** The version and the raw signature of `<kind>:v<N>:<base64>`; undefined when malformed. */
export function parseSignature(signature: string): { version: number; bytes: Buffer } | undefined {
  const match = /^[a-z]+:v([1-9][0-9]*):([A-Za-z0-9+/]+={0,2})$/.exec(signature);
  return match ? { version: Number(match[1]), bytes: Buffer.from(match[2], 'base64') } : undefined;
}

/** Checks a KMS signature of `data` with the public keys alone. */
export function verifyWithPublicKeys(keys: readonly AuditPublicKey[], keyName: string, data: Buffer, signature: string): boolean {
  const parsed = parseSignature(signature);
  if (!parsed) return false;
  const key = keys.find((k) => k.keyName === keyName && k.version === parsed.version);
  if (!key) return false;
  const raw = Buffer.from(key.publicKey, 'base64');
  if (raw.length !== 32) return false;
  try {
    const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
    return edVerify(null, data, publicKey, parsed.bytes);
  } catch {
    return false;
  }
}
