import { applyDecorators, createParamDecorator, ExecutionContext, SetMetadata } from '@nestjs/common';
import { ApiExtension } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { ACCESS_EXTENSION, ErrorCode, RouteAccess } from '@coffer/http';
import type { Role } from '@coffer/tenancy';

/**
 * Who may call a route. Every route declares it; a route that forgets is treated as
 * platform-admin only (deny by default), and a test lists the routes that forgot.
 */
export type Access =
  | { kind: 'public' }
  | { kind: 'platform_admin' }
  | { kind: 'org'; roles: readonly Role[]; platformAdmin: boolean };

export const ACCESS_KEY = 'coffer:access';

/** What AuthGuard can answer for a route of each access (a public route's path parameters aside). */
const GUARD_ERRORS: Record<Access['kind'], ErrorCode[]> = {
  public: [],
  // The bearer is checked (the database, and an org key's hash opened with the org's field key), failures limited.
  platform_admin: ['unauthenticated', 'authentication_rate_limited', 'database_busy', 'kms_unavailable', 'field_decryption_failed', 'forbidden'],
  org: [
    'unauthenticated',
    'authentication_rate_limited',
    'database_busy',
    'kms_unavailable',
    'field_decryption_failed',
    'forbidden',
    'organization_not_found',
    'organization_busy',
  ],
};

/** The route's access, for the guard, and in its OpenAPI operation (completeDocument: security, error codes). */
const access = (value: Access) =>
  applyDecorators(SetMetadata(ACCESS_KEY, value), ApiExtension(ACCESS_EXTENSION, { ...value, errors: GUARD_ERRORS[value.kind] } satisfies RouteAccess));

export const Public = () => access({ kind: 'public' });
export const PlatformAdminOnly = () => access({ kind: 'platform_admin' });

/**
 * An org-scoped route (its path has `:org`). Members of that org with one of `roles` may call
 * it; members of other orgs get 404 as if the org did not exist. `platformAdmin` lets the
 * platform admin act on any org (so an org's first admin can be created).
 */
export const OrgAccess = (roles: readonly Role[], options: { platformAdmin?: boolean } = {}) =>
  access({ kind: 'org', roles, platformAdmin: options.platformAdmin ?? false });

export const ALL_ROLES: readonly Role[] = ['admin', 'security_officer', 'member'];

export const CurrentOrg = createParamDecorator((_: unknown, ctx: ExecutionContext) => {
  const org = ctx.switchToHttp().getRequest<FastifyRequest>().org;
  if (!org) throw new Error('CurrentOrg used on a route without OrgAccess');
  return org;
});

export const CurrentPrincipal = createParamDecorator(
  (_: unknown, ctx: ExecutionContext) => ctx.switchToHttp().getRequest<FastifyRequest>().principal,
);
