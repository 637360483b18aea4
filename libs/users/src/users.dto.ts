import { z } from 'zod';
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
