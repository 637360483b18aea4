import type { Role } from '@coffer/tenancy';

export interface User {
  id: string;
  email: string;
  displayName: string;
  role: Role;
  disabled: boolean;
  disabledAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

/** `user_disabled`: the key is intact but its user is disabled (it works again if they are re-enabled). */
export type ApiKeyStatus = 'active' | 'revoked' | 'expired' | 'user_disabled';

export interface ApiKey {
  id: string;
  userId: string;
  name: string;
  status: ApiKeyStatus;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
}

/** Emails compare case-insensitively and without surrounding space. */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}
