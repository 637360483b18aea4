import { KmsRequestError } from './kms-provider';

/**
 * Key names become URL path segments in Vault, so they are held to a safe alphabet: a name like
 * `../sys/seal` must never reach the HTTP client.
 */
export function assertKeyName(name: string): void {
  if (!/^[A-Za-z0-9_.-]{1,128}$/.test(name) || name === '.' || name === '..') {
    throw new KmsRequestError('invalid key name', 400);
  }
}

/** Splits `<prefix>:v<N>:<base64>` into its version and decoded body. */
export function parseWrapped(value: string, prefix: string): { version: number; body: Buffer } {
  const match = new RegExp(`^${prefix}:v([1-9][0-9]{0,8}):([A-Za-z0-9+/]+={0,2})$`).exec(value);
  if (!match) throw new KmsRequestError('malformed wrapped value', 400);
  return { version: Number(match[1]), body: Buffer.from(match[2], 'base64') };
}
