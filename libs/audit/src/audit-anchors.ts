import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { STORAGE, StorageDriver } from '@coffer/storage';
import { canonicalJson } from './audit-chain';
import type { AuditAnchor } from './audit-signing';

/** Where a chain's anchors are kept in the storage backend. */
export const ANCHOR_PREFIX = 'anchors';

export function anchorKey(chainId: string, seq: number): string {
  return `${ANCHOR_PREFIX}/${chainId}/${String(seq).padStart(20, '0')}.json`;
}

/** An anchor as read back, with where it was found; `anchor` is undefined when it does not parse. */
export interface ReadAnchor {
  /** `storage:anchors/<chain>/<seq>.json`: how verify names the anchor that caught a change. */
  location: string;
  /** From the object's name; an anchor whose content names another is not read as one. */
  seq: number;
  anchor?: AuditAnchor;
}

/**
 * The checkpoints of every chain, written outside PostgreSQL: one object per checkpoint in the
 * storage backend (the S3 bucket, locked for AUDIT_ANCHOR_RETENTION_DAYS when set; with the
 * filesystem driver, a directory the database owner may well reach too, see docs/security.md).
 * The app tier only ever writes them; nothing in Coffer deletes them.
 */
@Injectable()
export class AuditAnchorStore {
  constructor(
    @Inject(STORAGE) private readonly storage: StorageDriver,
    @Inject(APP_CONFIG) private readonly config: Pick<AppConfig, 'AUDIT_ANCHOR_RETENTION_DAYS'>,
  ) {}

  /** Writes the anchor; returns its location. */
  async write(anchor: AuditAnchor): Promise<string> {
    const key = anchorKey(anchor.chain, anchor.seq);
    const days = this.config.AUDIT_ANCHOR_RETENTION_DAYS;
    await this.storage.put(key, Buffer.from(canonicalJson(anchor)), days ? { retainUntil: new Date(Date.now() + days * 86_400_000) } : {});
    return `storage:${key}`;
  }

  /** The newest readable anchor at or before `seq`, if any (one GET, whatever the number of anchors). */
  async latestAtOrBefore(chainId: string, seq: number): Promise<AuditAnchor | undefined> {
    const candidates: { key: string; seq: number }[] = [];
    for await (const key of this.storage.list(`${ANCHOR_PREFIX}/${chainId}/`)) {
      const at = anchorSeq(key);
      if (at !== undefined && at <= seq) candidates.push({ key, seq: at });
    }
    for (const candidate of candidates.sort((a, b) => b.seq - a.seq)) {
      const anchor = parseAnchor(await readAll(await this.storage.get(candidate.key)), chainId);
      if (anchor?.seq === candidate.seq) return anchor;
    }
    return undefined;
  }

  /** Every anchor of the chain, in sequence order (one that does not parse, without `anchor`). */
  async list(chainId: string): Promise<ReadAnchor[]> {
    const found: ReadAnchor[] = [];
    for await (const key of this.storage.list(`${ANCHOR_PREFIX}/${chainId}/`)) {
      const seq = anchorSeq(key);
      if (seq === undefined) continue;
      const anchor = parseAnchor(await readAll(await this.storage.get(key)), chainId);
      found.push({ location: `storage:${key}`, seq, anchor: anchor?.seq === seq ? anchor : undefined });
    }
    return found.sort((a, b) => a.seq - b.seq);
  }
}

function anchorSeq(key: string): number | undefined {
  const named = /\/0*([1-9][0-9]*)\.json$/.exec(key);
  return named ? Number(named[1]) : undefined;
}

/** An anchor of `chainId` in these bytes, or undefined. */
export function parseAnchor(bytes: Buffer, chainId?: string): AuditAnchor | undefined {
  try {
    const a = JSON.parse(bytes.toString('utf8'));
    const ok =
      a?.format === 'coffer-audit-anchor/1' &&
      typeof a.chain === 'string' &&
      (chainId === undefined || a.chain === chainId) &&
      Number.isSafeInteger(a.seq) &&
      a.seq > 0 &&
      typeof a.hash === 'string' &&
      /^[0-9a-f]{64}$/.test(a.hash) &&
      typeof a.keyName === 'string' &&
      typeof a.signature === 'string';
    return ok ? (a as AuditAnchor) : undefined;
  } catch {
    return undefined;
  }
}

async function readAll(stream: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks);
}
