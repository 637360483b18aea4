import { SetMetadata } from '@nestjs/common';

export const AUDIT_ACTION_KEY = 'coffer:audit-action';
export const AUDIT_READ_KEY = 'coffer:audit-read';

/**
 * Names the entry every mutating route gets automatically (otherwise `POST /route/:template`).
 */
export const AuditAction = (action: string) => SetMetadata(AUDIT_ACTION_KEY, action);

/** A read of sensitive data: every call is audited under `action`, as a mutation would be. */
export const AuditRead = (action: string) => SetMetadata(AUDIT_READ_KEY, action);
