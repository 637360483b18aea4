import type { OrgRef, Principal } from '@coffer/tenancy';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
    org?: OrgRef;
    /** The caller's own org (a user's), whose chain records what they were denied elsewhere. */
    principalOrg?: OrgRef;
  }
}
