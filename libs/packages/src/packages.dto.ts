import { z } from 'zod';
import { PACKAGE_NAME } from './package';

export const PackageName = z.string().regex(PACKAGE_NAME, 'letters, digits, ".", "_" and "-", at most 128, starting with a letter or digit');
export const VersionNumber = z.coerce.number().int().min(1).max(2_147_483_647);

export const CreateLinkBody = z.object({ ttlSeconds: z.number().int().min(1).optional() }).strict();
export type CreateLinkBody = z.infer<typeof CreateLinkBody>;
