import { AppError } from '@coffer/http';

/**
 * What Coffer needs from a key-management service. Two implementations: `vault` (Vault or
 * OpenBao transit over HTTP) and `local` (a master key, versioned keys kept wrapped in the
 * control-plane database). Both pass the same contract suite. Key material never leaves the
 * provider except as the plaintext half of a fresh data key, which callers keep in memory only.
 */
export interface KmsProvider {
  readonly kind: 'vault' | 'local';

  /** Reachability and seal state; never throws. */
  health(): Promise<KmsHealth>;

  /** Creates the named key if it does not exist (idempotent). `type` defaults to aes256-gcm96. */
  ensureKey(name: string, type?: KmsKeyType): Promise<void>;
  keyInfo(name: string): Promise<KmsKeyInfo>;
  /** Adds a version; returns the new latest version. */
  rotate(name: string): Promise<number>;
  setMinDecryptionVersion(name: string, version: number): Promise<void>;

  /** A fresh 256-bit data key, in plaintext and wrapped under the key's latest version. */
  generateDataKey(name: string): Promise<DataKey>;
  /**
   * Wraps a data key made outside the KMS (one generated locally while the KMS was down, see
   * the write spool) under the key's latest version, exactly as generateDataKey would have.
   */
  wrap(name: string, plaintext: Buffer): Promise<WrappedKey>;
  /** Unwraps a data key wrapped by generateDataKey, wrap or rewrap. */
  unwrap(name: string, wrapped: string): Promise<Buffer>;
  /** Re-wraps under the latest version without the plaintext leaving the provider. */
  rewrap(name: string, wrapped: string): Promise<WrappedKey>;

  /** Signature with an ed25519 key (`ensureKey(name, 'ed25519')`). */
  sign(name: string, data: Buffer): Promise<string>;
  verify(name: string, data: Buffer, signature: string): Promise<boolean>;
  /**
   * The public half of every version of an ed25519 key, oldest first: what anyone needs to check
   * its signatures without the KMS (`<kind>:v<N>:<base64>` was signed by version N).
   */
  publicKeys(name: string): Promise<KmsPublicKey[]>;
}

export interface KmsPublicKey {
  version: number;
  /** The raw 32-byte ed25519 public key (RFC 8032), base64 (standard alphabet, padded). */
  publicKey: string;
  createdAt: Date;
}

export type KmsKeyType = 'aes256-gcm96' | 'ed25519';

export interface KmsHealth {
  reachable: boolean;
  sealed: boolean;
  /** Provider-specific detail safe to show an admin (version, error code); never a secret. */
  detail?: string;
}

export interface KmsKeyInfo {
  name: string;
  type: KmsKeyType;
  latestVersion: number;
  minDecryptionVersion: number;
  versions: { version: number; createdAt: Date }[];
}

export interface WrappedKey {
  /** `vault:v<N>:<base64>` (or `local:v<N>:<base64>`): the version is readable without the key. */
  wrapped: string;
  keyVersion: number;
}

export interface DataKey extends WrappedKey {
  plaintext: Buffer;
}

/**
 * The KMS cannot be reached or is sealed: callers queue or answer 503 `kms_unavailable`. An
 * AppError, so a request that meets it ends in that answer wherever it is thrown.
 */
export class KmsUnavailableError extends AppError {
  declare readonly code: 'kms_unavailable';
  constructor(message = 'KMS unavailable') {
    super('kms_unavailable', message);
  }
}

/**
 * The KMS refused the request: tampered or foreign ciphertext, a version below
 * min_decryption_version, an unknown key. Never carries key material or plaintext.
 */
export class KmsRequestError extends Error {
  readonly code = 'kms_request_failed';
  constructor(message: string, readonly status?: number) {
    super(message);
  }
}

/** Version of a wrapped value, read from its `<kind>:v<N>:` prefix. */
export function wrappedKeyVersion(wrapped: string): number {
  const match = /^[a-z]+:v(\d+):/.exec(wrapped);
  if (!match) throw new KmsRequestError('malformed wrapped key');
  return Number(match[1]);
}

/**
 * The same version in SQL, for `column`: NULL for a value in any other form (a data key sealed to
 * the spool key, `spool:<id>:...`, is not KMS-wrapped yet).
 */
export const wrappedKeyVersionSql = (column: string) => `substring(${column} from '^[a-z]+:v([0-9]+):')::int`;

/** The KMS key that belongs to one organization. */
export const orgKeyName = (orgId: string) => `coffer-org-${orgId}`;
