import { z } from 'zod';
import { Instant } from '@coffer/http';
import { DisplayName, Email, IssuedApiKeyView, UserView } from '@coffer/users';
import { SLUG_PATTERN } from '@coffer/tenancy';

export const CreateOrganizationBody = z
  .object({
    slug: z.string().regex(SLUG_PATTERN, 'lowercase letters, digits and inner hyphens, 1 to 40 characters'),
    name: z.string().trim().min(1).max(200),
    admin: z.object({ email: Email, displayName: DisplayName }).strict().optional(),
  })
  .strict();
export type CreateOrganizationBody = z.infer<typeof CreateOrganizationBody>;

/** An organization as the API shows it (publicOrg: never where its database is). */
export const OrganizationView = z.strictObject({
  id: z.string(),
  slug: z.string(),
  name: z.string(),
  status: z.enum(['provisioning', 'active']),
  createdAt: Instant,
});
export const OrganizationAnswer = z.strictObject({ organization: OrganizationView });
export const OrganizationsAnswer = z.strictObject({ organizations: z.array(OrganizationView) });

/** 201: the organization is active; with its first admin and their key when the request named one. */
export const OrganizationCreatedAnswer = z.strictObject({
  organization: OrganizationView,
  admin: z.strictObject({ user: UserView, apiKey: IssuedApiKeyView }).optional(),
});
/** 202: still provisioning. */
export const OrganizationPendingAnswer = z.strictObject({
  organization: z.strictObject({ slug: z.string(), name: z.string(), status: z.enum(['provisioning', 'active']) }),
  statusUrl: z.string().meta({ description: 'GET it (as the platform admin) until the status is active; also in Location' }),
});
/** An organization's registration: the organization, or, before it is registered, its slug while it provisions. */
export const OrganizationStatusAnswer = z.strictObject({
  organization: z.union([OrganizationView, z.strictObject({ slug: z.string(), status: z.literal('provisioning') })]),
});
