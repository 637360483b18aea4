import { z } from 'zod';
import { Instant } from '@coffer/http';

/** What an admin or security officer sees of the org's key (KeyRotationService.describe). */
export const OrgKeyView = z.strictObject({
  keyName: z.string(),
  provider: z.enum(['vault', 'local']),
  latestVersion: z.number().int(),
  minDecryptionVersion: z.number().int(),
  lastRotatedAt: Instant.nullable(),
  nextRotationAt: Instant,
  rotationPeriodDays: z.number(),
  versions: z.array(z.strictObject({ version: z.number().int(), createdAt: Instant, wrappedDataKeys: z.number().int() })),
  rewrap: z.strictObject({
    remaining: z.number().int().meta({ description: 'stored data keys still wrapped under an older version' }),
    completedAt: Instant.nullable(),
  }),
});

/** A rotation (RotationResult). */
export const KeyRotationAnswer = z.strictObject({
  keyName: z.string(),
  previousVersion: z.number().int(),
  version: z.number().int(),
  rotatedAt: Instant,
  nextRotationAt: Instant,
});
