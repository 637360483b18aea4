import { isIP } from 'node:net';
import { z } from 'zod';
import { Instant } from '@coffer/http';

/**
 * A DNS name as the S3 client takes it: labels of letters, digits, inner hyphens or underscores,
 * at most 63 characters each, 253 in all, absolute (a final dot) or not.
 */
const HOST_NAME = /^(?=.{1,254}$)[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?)*\.?$/i;

/**
 * The endpoint's refinements run even when `z.url()` failed (zod goes on with the checks of a
 * schema), so they parse without throwing: a string that is no URL is refused, never a 500.
 */
const isOrigin = (u: string) => {
  const url = URL.parse(u);
  return !!url && !url.pathname.replace(/\/$/, '') && !url.search;
};
const hasClientHost = (u: string) => {
  const host = URL.parse(u)?.hostname ?? '';
  return isIP(host.replace(/^\[(.*)\]$/, '$1')) !== 0 || HOST_NAME.test(host);
};

export const AuditDestinationBody = z
  .object({
    /** The S3 server: `https://s3.example.com`. An internal address or name only if OUTBOUND_ALLOWED_HOSTS allows it. */
    endpoint: z
      .url({ protocol: /^https?$/ })
      .refine(isOrigin, { message: 'an origin only: scheme, host and port' })
      .refine(hasClientHost, { message: 'a host name (labels of letters, digits and inner hyphens, at most 63 characters each, 253 in all) or an IP address' }),
    region: z.string().min(1).max(64).default('us-east-1'),
    bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name'),
    /** Keys are `<prefix><orgId>/entries/...` and `<prefix><orgId>/digests/...`. */
    prefix: z
      .string()
      .max(512)
      .regex(/^(?!\/)[A-Za-z0-9!_.*'()\/-]*$/, 'no leading slash; S3-safe characters')
      .default('')
      .transform((p) => (p && !p.endsWith('/') ? `${p}/` : p)),
    accessKeyId: z.string().min(1).max(128),
    secretAccessKey: z.string().min(1).max(256),
  })
  .strict();
export type AuditDestinationInput = z.infer<typeof AuditDestinationBody>;

/** Where the audit log is delivered and how far delivery has got: never the credentials. */
export const AuditDestinationView = z.strictObject({
  endpoint: z.string(),
  region: z.string(),
  bucket: z.string(),
  prefix: z.string(),
  updatedAt: Instant,
  deliveredThrough: z.number().int(),
  lastDeliveredAt: Instant.nullable(),
  batches: z.number().int(),
  pendingEntries: z.number().int(),
});
