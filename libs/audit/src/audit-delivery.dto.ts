import { z } from 'zod';

export const AuditDestinationBody = z
  .object({
    /** The S3 server: `https://s3.example.com` or `http://minio:9000`. */
    endpoint: z.url({ protocol: /^https?$/ }).refine((u) => !new URL(u).pathname.replace(/\/$/, '') && !new URL(u).search, {
      message: 'an origin only: scheme, host and port',
    }),
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
