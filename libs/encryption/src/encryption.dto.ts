import { z } from 'zod';
import { Instant } from '@coffer/http';
import { OrgKeyView } from '@coffer/keys';

/** EncryptionStatusService.status: the four keys of the encryption requirement, plus details. */
export const EncryptionStatusAnswer = z.strictObject({
  storage_encryption: z.enum(['AES-256-KMS', 'partial']),
  transit_encryption: z.string().meta({ description: 'the protocol this request arrived on: `TLS-1.3`, `TLS-1.2`, or `none`' }),
  key_rotation: z.strictObject({ last_rotated: Instant.nullable(), next_rotation: Instant }),
  db_encryption: z.enum(['active', 'partial']),
  details: z.strictObject({
    database: z.strictObject({
      algorithm: z.literal('AES-256-GCM'),
      blindIndex: z.literal('HMAC-SHA256'),
      columns: z.array(z.strictObject({ table: z.string(), column: z.string(), encrypted: z.number().int(), plaintext: z.number().int() })),
    }),
    storage: z.strictObject({
      driver: z.enum(['filesystem', 's3']),
      format: z.string(),
      versions: z.number().int(),
      kmsWrapped: z.number().int(),
      serverSideEncryption: z.string().nullable(),
    }),
    kms: z.strictObject({ provider: z.string(), reachable: z.boolean(), sealed: z.boolean() }),
    key: OrgKeyView.nullable().meta({ description: 'null while the KMS cannot describe the key' }),
    pendingWrites: z.strictObject({ pending: z.number().int(), failed: z.number().int(), oldestPendingAt: Instant.nullable() }),
    certificate: z.strictObject({ serial: z.string(), notAfter: Instant, names: z.array(z.string()) }).nullable(),
    measuredAt: Instant,
  }),
});
