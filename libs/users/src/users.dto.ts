import { z } from 'zod';
import { Instant } from '@coffer/http';
import { ROLES } from '@coffer/tenancy';

export const Email = z.string().trim().pipe(z.email().max(254));
export const DisplayName = z.string().trim().min(1).max(200);

export const CreateUserBody = z.object({ email: Email, displayName: DisplayName, role: z.enum(ROLES) }).strict();
export type CreateUserBody = z.infer<typeof CreateUserBody>;

export const CreateApiKeyBody = z
  .object({
    name: z.string().trim().min(1).max(100),
    expiresAt: z.iso
      .datetime({ offset: true })
      .transform((s) => new Date(s))
      .refine((d) => d.getTime() > Date.now(), 'must be in the future')
      .optional(),
  })
  .strict();
export type CreateApiKeyBody = z.infer<typeof CreateApiKeyBody>;

/** A user as the API shows it (answers of the users routes). */
export const UserView = z.strictObject({
  id: z.string(),
  email: z.string(),
  displayName: z.string(),
  role: z.enum(ROLES),
  disabled: z.boolean(),
  disabledAt: Instant.nullable(),
  createdAt: Instant,
  updatedAt: Instant,
});
export const UserAnswer = z.strictObject({ user: UserView });
export const UsersAnswer = z.strictObject({ users: z.array(UserView) });

/** An API key as listed: never its secret. */
export const ApiKeyView = z.strictObject({
  id: z.string(),
  userId: z.string(),
  name: z.string(),
  status: z.enum(['active', 'revoked', 'expired', 'user_disabled']),
  createdAt: Instant,
  expiresAt: Instant.nullable(),
  revokedAt: Instant.nullable(),
});
/** A key just issued: its secret (`coffer_key.…`), shown in this answer only. */
export const IssuedApiKeyView = ApiKeyView.extend({ secret: z.string().meta({ description: 'the bearer token; shown once, stored only as a hash' }) });
export const IssuedApiKeyAnswer = z.strictObject({ apiKey: IssuedApiKeyView });
export const ApiKeyAnswer = z.strictObject({ apiKey: ApiKeyView });
export const ApiKeysAnswer = z.strictObject({ apiKeys: z.array(ApiKeyView) });
