import { z } from 'zod';
import { Instant } from '@coffer/http';
import { PACKAGE_NAME } from './package';

export const PackageName = z.string().regex(PACKAGE_NAME, 'letters, digits, ".", "_" and "-", at most 128, starting with a letter or digit');
export const VersionNumber = z.coerce.number().int().min(1).max(2_147_483_647);

export const CreateLinkBody = z
  .object({
    // The cap is a setting (AssetLinksService.create enforces it); the OpenAPI document shows its value.
    ttlSeconds: z.number().int().min(1).optional().meta({
      description: 'seconds the link lives: at most PACKAGE_LINK_MAX_TTL_SECONDS; PACKAGE_LINK_DEFAULT_TTL_SECONDS when absent',
      'x-coffer-max-setting': 'PACKAGE_LINK_MAX_TTL_SECONDS',
      'x-coffer-default-setting': 'PACKAGE_LINK_DEFAULT_TTL_SECONDS',
    }),
  })
  .strict();
export type CreateLinkBody = z.infer<typeof CreateLinkBody>;

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/).meta({ description: 'hex SHA-256 of the content' });

/** A committed version (PackageVersion). */
export const PackageVersionView = z.strictObject({
  id: z.string(),
  package: z.string(),
  version: z.number().int(),
  size: z.number().int(),
  sha256: Sha256,
  contentType: z.string(),
  kmsKeyVersion: z.number().int(),
  createdBy: z.string(),
  createdAt: Instant,
});
/** 202: an upload stored while the KMS was unavailable, queued until the worker flushes it (QueuedVersion). */
export const QueuedVersionView = z.strictObject({
  pendingWriteId: z.string(),
  status: z.enum(['pending', 'flushed', 'failed']),
  id: z.string(),
  package: z.string(),
  size: z.number().int(),
  sha256: Sha256,
  contentType: z.string(),
  createdBy: z.string(),
  createdAt: Instant,
});
export const PackagesAnswer = z.strictObject({
  packages: z.array(
    z.strictObject({ name: z.string(), latestVersion: z.number().int().nullable(), versions: z.number().int(), createdBy: z.string(), createdAt: Instant }),
  ),
});
export const PackageAnswer = z.strictObject({ name: z.string(), versions: z.array(PackageVersionView) });
export const DeletedVersionAnswer = z.strictObject({ version: PackageVersionView });
export const DeletedPackageAnswer = z.strictObject({ name: z.string(), versionsDeleted: z.number().int() });
export const PendingWriteAnswer = z.strictObject({
  id: z.string(),
  kind: z.literal('package.version'),
  status: z.enum(['pending', 'flushed', 'failed']),
  package: z.string().nullable(),
  version: z.number().int().nullable().meta({ description: 'the version number, once flushed' }),
  createdAt: Instant,
  flushedAt: Instant.nullable(),
  attempts: z.number().int(),
  lastError: z.string().nullable(),
});
export const AssetLinkAnswer = z.strictObject({
  id: z.string(),
  url: z.string().meta({ description: '`/api/v1/assets/<token>`: GET it without an API key' }),
  expiresAt: Instant,
});
export const RevokedLinkAnswer = z.strictObject({ revoked: z.string().meta({ description: 'the id of the link revoked' }) });
export const RevokedLinksAnswer = z.strictObject({ revokedKeys: z.number().int().meta({ description: 'link signing keys revoked' }) });
