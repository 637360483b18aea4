import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { canonicalJson, ChainedEntry, ChainVerifier, VerifyResult } from './audit-chain';
import { AuditAnchor, AuditPublicKey, checkpointData, checkpointKeyName, verifyWithPublicKeys } from './audit-signing';

/**
 * Verifies an audit log with nothing but its files and the public keys: no database, no KMS,
 * no Redis (`coffer audit:verify-offline`; the algorithm is docs/audit-verification.md).
 *
 * Files, by name and content: `*.ndjson` / `*.ndjson.gz` hold entries as the API exports them
 * (any order, the export's newest-first included), and may hold checkpoint anchors and the
 * chain's public keys as lines of their own (`coffer audit:export` appends them: an
 * EXPORT_KEYS_FORMAT line, its keys trusted on first use as the digests' are); `*.json` files are digests
 * (`coffer-audit-digest/*`), checkpoint anchors (`coffer-audit-anchor/1`) or a key set (the
 * answer of GET /api/v1/audit/keys). Checked: the hash chain from genesis; each digest's
 * signature, its link to the previous digest, its object's SHA-256 and the chain's hash at its
 * last entry; each checkpoint's signature and the chain's hash at its sequence number.
 */
export interface OfflineFile {
  /** The path relative to what was given (a digest's `object` is matched on its last segments). */
  name: string;
  bytes: Buffer;
}

export interface OfflineResult extends VerifyResult {
  chain: string | null;
  entries: number;
  digests: number;
  checkpoints: number;
  /** The highest sequence number a checked signature covers. */
  signedThrough: number;
  /**
   * `pinned`: given (--keys, or a key file among the files); `digests`: taken from the digests
   * themselves, `export`: from a key line of an exported NDJSON file (both trust on first use).
   */
  keysFrom: 'pinned' | 'digests' | 'export' | 'none';
}

/** The `format` of the line of an NDJSON export that carries the chain's public keys (GET /api/v1/audit/keys's answer). */
export const EXPORT_KEYS_FORMAT = 'coffer-audit-keys/1';

interface ParsedDigest {
  file: string;
  bytes: Buffer;
  digest: Record<string, unknown> & {
    format: string;
    chain: string;
    batch: number;
    firstSeq: number;
    lastSeq: number;
    lastEntryHash: string;
    object: string;
    objectSha256: string;
    previousDigestSha256: string | null;
    keyName: string;
    signature: string;
    checkpoint?: AuditAnchor | null;
    publicKeys?: AuditPublicKey[];
  };
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

export function verifyOffline(files: readonly OfflineFile[], pinnedKeys?: readonly AuditPublicKey[]): OfflineResult {
  const unreadable: string[] = [];
  const duplicates: { seq: number; file: string }[] = [];
  const entries = new Map<number, ChainedEntry>();
  const digests: ParsedDigest[] = [];
  const anchors: { location: string; anchor: AuditAnchor }[] = [];
  const fileKeys: AuditPublicKey[] = [];
  const exportKeys: AuditPublicKey[] = [];
  const entryFiles = new Map<string, Buffer>();

  for (const { name, bytes } of files) {
    if (/\.ndjson(\.gz)?$/.test(name)) {
      entryFiles.set(name, bytes);
      let text: string;
      try {
        text = (name.endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8');
      } catch {
        unreadable.push(name);
        continue;
      }
      for (const line of text.split('\n')) {
        if (!line.trim()) continue;
        const entry = parseEntry(line);
        if (!entry) {
          const other = parseJson(line);
          if (other?.format === 'coffer-audit-anchor/1' && isAnchor(other)) {
            anchors.push({ location: `${name}#checkpoint-${other.seq}`, anchor: other });
            continue;
          }
          if (other?.format === EXPORT_KEYS_FORMAT && Array.isArray(other.keys) && other.keys.every(isPublicKey)) {
            exportKeys.push(...other.keys);
            continue;
          }
          unreadable.push(name);
          break;
        }
        const seen = entries.get(entry.seq);
        if (seen && !seen.hash.equals(entry.hash)) duplicates.push({ seq: entry.seq, file: name });
        entries.set(entry.seq, entry);
      }
    } else if (name.endsWith('.json')) {
      let value: any;
      try {
        value = JSON.parse(bytes.toString('utf8'));
      } catch {
        unreadable.push(name);
        continue;
      }
      if (typeof value?.format === 'string' && value.format.startsWith('coffer-audit-digest/') && isDigest(value)) {
        digests.push({ file: name, bytes, digest: value });
      } else if (value?.format === 'coffer-audit-anchor/1' && isAnchor(value)) {
        anchors.push({ location: name, anchor: value });
      } else if (Array.isArray(value?.keys) && value.keys.every(isPublicKey)) {
        fileKeys.push(...value.keys);
      } else {
        unreadable.push(name);
      }
    }
  }

  const chain =
    digests[0]?.digest.chain ?? anchors[0]?.anchor.chain ?? chainOfKey((pinnedKeys ?? fileKeys)[0]?.keyName ?? exportKeys[0]?.keyName) ?? null;
  const pinned = [...(pinnedKeys ?? []), ...fileKeys];
  const digestKeys = digests.flatMap((d) => d.digest.publicKeys ?? []);
  const keys = pinned.length ? pinned : [...digestKeys, ...exportKeys];
  const keysFrom = pinned.length ? 'pinned' : digestKeys.length ? 'digests' : exportKeys.length ? 'export' : 'none';
  const base = { chain, entries: entries.size, digests: digests.length, keysFrom } as const;
  if (!chain) {
    return { ...base, valid: false, checkedThrough: 0, firstBadSequence: 1, reason: 'no digest, checkpoint or key names the chain', checkpoints: 0, signedThrough: 0 };
  }

  // The chain, from genesis.
  const verifier = new ChainVerifier(chain);
  const ordered = [...entries.values()].sort((a, b) => a.seq - b.seq);
  for (const entry of ordered) if (!verifier.next(entry)) break;
  const intact = verifier.head.seq;
  const hashAt = (seq: number) => (seq <= intact ? entries.get(seq)?.hash : undefined);
  for (const { seq, file } of duplicates) verifier.failAt(seq, `${file} holds another entry ${seq}`, file);

  // The digests: consecutive batches, each linked to the previous one and signed.
  let signedThrough = 0;
  const byBatch = [...digests].sort((a, b) => a.digest.batch - b.digest.batch);
  let previous: ParsedDigest | undefined;
  for (const d of byBatch) {
    const { digest, file } = d;
    const expectedFirst = (previous?.digest.lastSeq ?? 0) + 1;
    const fail = (seq: number, reason: string) => verifier.failAt(seq, reason, file);
    const { signature, ...unsigned } = digest;
    if (digest.chain !== chain || digest.keyName !== checkpointKeyName(chain)) {
      fail(expectedFirst, `digest ${digest.batch} belongs to another chain`);
      break;
    }
    if (!verifyWithPublicKeys(keys, digest.keyName, Buffer.from(canonicalJson(unsigned)), signature)) {
      fail(expectedFirst, `digest ${digest.batch} has an invalid signature`);
      break;
    }
    if (digest.batch !== (previous?.digest.batch ?? 0) + 1 || digest.firstSeq !== expectedFirst) {
      fail(expectedFirst, `digest ${(previous?.digest.batch ?? 0) + 1} is missing`);
      break;
    }
    if (digest.previousDigestSha256 !== (previous ? sha256(previous.bytes) : null)) {
      fail(expectedFirst, `digest ${digest.batch} does not link to the digest before it`);
      break;
    }
    const object = findObject(entryFiles, digest.object);
    if (!object) {
      fail(digest.firstSeq, `the entries of digest ${digest.batch} (${digest.object}) are missing`);
      break;
    }
    if (sha256(object.bytes) !== digest.objectSha256) {
      verifier.failAt(digest.firstSeq, `${object.name} does not match the SHA-256 in digest ${digest.batch}`, file);
      break;
    }
    const last = hashAt(digest.lastSeq);
    if (!last) {
      if (verifier.result().valid) fail(verifier.head.seq + 1, `digest ${digest.batch} signed entries that are not there`);
      break;
    }
    if (last.toString('hex') !== digest.lastEntryHash) {
      fail(digest.lastSeq, `entry ${digest.lastSeq} does not match digest ${digest.batch}`);
      break;
    }
    signedThrough = digest.lastSeq;
    if (digest.checkpoint) anchors.push({ location: `${file}#checkpoint`, anchor: digest.checkpoint });
    previous = d;
  }

  // The checkpoints: signed by the chain's key, and the chain still has their hash.
  for (const { location, anchor } of anchors) {
    const hash = Buffer.from(anchor.hash, 'hex');
    if (anchor.chain !== chain || anchor.keyName !== checkpointKeyName(chain) || !verifyWithPublicKeys(keys, anchor.keyName, checkpointData(chain, anchor.seq, hash), anchor.signature)) {
      verifier.failAt(anchor.seq, `checkpoint ${anchor.seq} has an invalid signature`, location);
    } else if (!entries.has(anchor.seq)) {
      if (verifier.result().valid) verifier.failAt(verifier.head.seq + 1, `checkpoint ${anchor.seq} signed entries that are not there`, location);
    } else if (hashAt(anchor.seq) && !hashAt(anchor.seq)!.equals(hash)) {
      verifier.failAt(anchor.seq, `entry ${anchor.seq} does not match its signed checkpoint`, location);
    } else if (hashAt(anchor.seq)) {
      signedThrough = Math.max(signedThrough, anchor.seq);
    }
  }

  for (const file of unreadable) verifier.failAt(Math.min(signedThrough, verifier.head.seq) + 1, `${file} is not readable as an audit log file`, file);
  const result = verifier.result();
  if (result.valid && signedThrough === 0) {
    return { ...base, checkpoints: anchors.length, signedThrough, valid: false, checkedThrough: result.checkedThrough, firstBadSequence: 1, reason: 'no valid digest or checkpoint signature covers these entries' };
  }
  return { ...base, ...result, checkpoints: anchors.length, signedThrough: result.valid ? signedThrough : Math.min(signedThrough, result.checkedThrough) };
}

/** A digest's `object` is `<prefix><org>/entries/<first>-<last>.ndjson.gz`; the file may sit anywhere. */
function findObject(files: Map<string, Buffer>, object: string): { name: string; bytes: Buffer } | undefined {
  const exact = files.get(object);
  if (exact) return { name: object, bytes: exact };
  const base = object.slice(object.lastIndexOf('/') + 1);
  for (const [name, bytes] of files) if (name === base || name.endsWith(`/${base}`)) return { name, bytes };
  return undefined;
}

function parseEntry(line: string): ChainedEntry | undefined {
  try {
    const e = JSON.parse(line);
    if (!Number.isSafeInteger(e.seq) || typeof e.hash !== 'string' || typeof e.prevHash !== 'string' || typeof e.occurredAt !== 'string') return undefined;
    return { ...e, occurredAt: new Date(e.occurredAt), prevHash: Buffer.from(e.prevHash, 'hex'), hash: Buffer.from(e.hash, 'hex') };
  } catch {
    return undefined;
  }
}

function parseJson(line: string): any {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

function isDigest(d: any): boolean {
  return (
    typeof d.chain === 'string' &&
    Number.isSafeInteger(d.batch) &&
    Number.isSafeInteger(d.firstSeq) &&
    Number.isSafeInteger(d.lastSeq) &&
    typeof d.lastEntryHash === 'string' &&
    typeof d.object === 'string' &&
    typeof d.objectSha256 === 'string' &&
    typeof d.keyName === 'string' &&
    typeof d.signature === 'string' &&
    (d.checkpoint === undefined || d.checkpoint === null || isAnchor(d.checkpoint)) &&
    (d.publicKeys === undefined || (Array.isArray(d.publicKeys) && d.publicKeys.every(isPublicKey)))
  );
}

function isAnchor(a: any): a is AuditAnchor {
  return typeof a?.chain === 'string' && Number.isSafeInteger(a.seq) && typeof a.hash === 'string' && /^[0-9a-f]{64}$/.test(a.hash) && typeof a.keyName === 'string' && typeof a.signature === 'string';
}

function isPublicKey(k: any): k is AuditPublicKey {
  return typeof k?.keyName === 'string' && Number.isSafeInteger(k.version) && typeof k.publicKey === 'string';
}

function chainOfKey(keyName: string | undefined): string | undefined {
  return keyName?.startsWith('coffer-audit-') ? keyName.slice('coffer-audit-'.length) : undefined;
}
