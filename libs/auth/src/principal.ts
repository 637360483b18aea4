import type { Role } from '@coffer/users';
import type { OrgRef } from '@coffer/orgs';

export type Principal =
  | { kind: 'platform_admin'; tokenId: string }
  | { kind: 'user'; orgId: string; userId: string; apiKeyId: string; role: Role };

/** How logs and the audit trail name the caller: never a secret, always an id. */
export function actorId(principal: Principal): string {
  return principal.kind === 'platform_admin' ? `platform_admin:${principal.tokenId}` : `user:${principal.userId}/key:${principal.apiKeyId}`;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
    org?: OrgRef;
  }
}
