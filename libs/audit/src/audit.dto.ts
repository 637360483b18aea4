import { z } from 'zod';
import type { ChainedEntry } from './audit-chain';

const instant = z.iso.datetime({ offset: true }).transform((s) => new Date(s));

export const AuditLogQuery = z
  .object({
    action: z.string().min(1).max(200).optional(),
    /** An actor id (`user:…`, `system:…`), a user id or an API key id. */
    actor: z.string().min(1).max(200).optional(),
    outcome: z.enum(['success', 'failure']).optional(),
    from: instant.optional(),
    to: instant.optional(),
    /** `nextCursor` of the previous page. */
    cursor: z.string().regex(/^[1-9][0-9]{0,15}$/).transform(Number).optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
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
export const AuditKeysQuery = z.object({ chain: z.string().regex(/^([0-9a-f]{8,64}|control)$/) }).strict();
export type AuditKeysFilter = z.infer<typeof AuditKeysQuery>;
