export const ROLES = ['admin', 'security_officer', 'member'] as const;
export type Role = (typeof ROLES)[number];

/** Who is calling: the platform admin's token or an org user's API key. */
export type Principal =
  | { kind: 'platform_admin'; tokenId: string }
  | { kind: 'user'; orgId: string; userId: string; apiKeyId: string; role: Role };

/** How logs and the audit trail name the caller: never a secret, always an id. */
export function actorId(principal: Principal): string {
  return principal.kind === 'platform_admin' ? `platform_admin:${principal.tokenId}` : `user:${principal.userId}/key:${principal.apiKeyId}`;
}

/** Who acted, as an audit entry records it: from the authenticated principal or the job, never from the params. */
export interface Actor {
  id: string;
  kind: 'user' | 'platform_admin' | 'system' | 'anonymous';
  [field: string]: string;
}

/** Where the request came from, or the request that enqueued the job. */
export interface RequestSource {
  requestId: string | null;
  clientIp: string | null;
  userAgent: string | null;
}

export const NO_REQUEST: RequestSource = { requestId: null, clientIp: null, userAgent: null };
