import { z } from 'zod';
import { Instant } from '@coffer/http';
import type { ChainedEntry } from './audit-chain';

const instant = z.iso.datetime({ offset: true }).transform((s) => new Date(s));

export const AuditLogQuery = z
  .object({
    action: z.string().min(1).max(200).optional().describe('only entries of this action (`user.created`, `package.content_read`, ...)'),
    /** An actor id (`user:…`, `system:…`), a user id or an API key id. */
    actor: z.string().min(1).max(200).optional().describe('only entries of this actor: an actor id (`user:…`, `system:…`), a user id or an API key id'),
    outcome: z.enum(['success', 'failure']).optional().describe('only successes or only failures'),
    from: instant.optional().describe('only entries at or after this instant (ISO 8601 with offset)'),
    to: instant.optional().describe('only entries at or before this instant (ISO 8601 with offset)'),
    /** `nextCursor` of the previous page. */
    cursor: z.string().regex(/^[1-9][0-9]{0,15}$/).transform(Number).optional().describe('`nextCursor` of the previous page'),
    limit: z.coerce.number().int().min(1).max(1000).default(100).describe('entries per page (JSON answers; an NDJSON export streams every match)'),
  })
  .strict();
/** A distinct name from the schema's: a parameter typed with the schema's own name would hand swagger the zod object as its "class". */
export type AuditLogFilters = z.infer<typeof AuditLogQuery>;

/** An entry as the API shows it; hashes in hex so that anyone can re-check the chain. */
export function publicEntry(entry: ChainedEntry) {
  return {
    seq: entry.seq,
    id: entry.id,
    occurredAt: entry.occurredAt.toISOString(),
    action: entry.action,
    outcome: entry.outcome,
    actor: entry.actor,
    target: entry.target,
    requestId: entry.requestId,
    clientIp: entry.clientIp,
    userAgent: entry.userAgent,
    body: entry.body,
    prevHash: entry.prevHash.toString('hex'),
    hash: entry.hash.toString('hex'),
  };
}

/** `GET /api/v1/audit/keys?chain=`: an org's id, or `control` for the control plane's chain. */
export const AuditKeysQuery = z
  .object({ chain: z.string().regex(/^([0-9a-f]{8,64}|control)$/).describe("an organization's id, or `control` for the control plane's chain") })
  .strict();
export type AuditKeysFilter = z.infer<typeof AuditKeysQuery>;

/** An entry as publicEntry() shows it. */
export const AuditEntryView = z.strictObject({
  seq: z.number().int(),
  id: z.string(),
  occurredAt: Instant,
  action: z.string(),
  outcome: z.enum(['success', 'failure']),
  actor: z.record(z.string(), z.unknown()),
  target: z.record(z.string(), z.unknown()).nullable(),
  requestId: z.string().nullable(),
  clientIp: z.string().nullable(),
  userAgent: z.string().nullable(),
  body: z.record(z.string(), z.unknown()),
  prevHash: z.string().meta({ description: 'hex SHA-256' }),
  hash: z.string().meta({ description: 'hex SHA-256' }),
});
export const AuditPageAnswer = z.strictObject({
  entries: z.array(AuditEntryView),
  nextCursor: z.string().nullable().meta({ description: 'the `cursor` of the next page; null on the last' }),
});
/** A chain's verification (VerifyResult). */
export const AuditVerifyAnswer = z.strictObject({
  valid: z.boolean(),
  checkedThrough: z.number().int().meta({ description: 'the last sequence number found intact' }),
  firstBadSequence: z.number().int().optional(),
  reason: z.string().optional(),
  anchor: z.string().optional().meta({ description: 'the checkpoint that caught the change, when one did' }),
});
export const AuditKeysAnswer = z.strictObject({
  chain: z.string(),
  algorithm: z.literal('ed25519'),
  keys: z.array(
    z.strictObject({
      keyName: z.string(),
      version: z.number().int(),
      algorithm: z.literal('ed25519'),
      publicKey: z.string().meta({ description: 'the raw 32-byte key, base64' }),
      createdAt: Instant,
    }),
  ),
});
