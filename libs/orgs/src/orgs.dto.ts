import { z } from 'zod';
import { DisplayName, Email } from '@coffer/users';
import { SLUG_PATTERN } from '@coffer/tenancy';

export const CreateOrganizationBody = z
  .object({
    slug: z.string().regex(SLUG_PATTERN, 'lowercase letters, digits and inner hyphens, 1 to 40 characters'),
    name: z.string().trim().min(1).max(200),
    admin: z.object({ email: Email, displayName: DisplayName }).strict().optional(),
  })
  .strict();
export type CreateOrganizationBody = z.infer<typeof CreateOrganizationBody>;
