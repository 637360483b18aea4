import { createParamDecorator, ExecutionContext, SetMetadata } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
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

export const Public = () => SetMetadata(ACCESS_KEY, { kind: 'public' } satisfies Access);
export const PlatformAdminOnly = () => SetMetadata(ACCESS_KEY, { kind: 'platform_admin' } satisfies Access);

/**
 * An org-scoped route (its path has `:org`). Members of that org with one of `roles` may call
 * it; members of other orgs get 404 as if the org did not exist. `platformAdmin` lets the
 * platform admin act on any org (so an org's first admin can be created).
 */
export const OrgAccess = (roles: readonly Role[], options: { platformAdmin?: boolean } = {}) =>
  SetMetadata(ACCESS_KEY, { kind: 'org', roles, platformAdmin: options.platformAdmin ?? false } satisfies Access);

export const ALL_ROLES: readonly Role[] = ['admin', 'security_officer', 'member'];

export const CurrentOrg = createParamDecorator((_: unknown, ctx: ExecutionContext) => {
  const org = ctx.switchToHttp().getRequest<FastifyRequest>().org;
  if (!org) throw new Error('CurrentOrg used on a route without OrgAccess');
  return org;
});

export const CurrentPrincipal = createParamDecorator(
  (_: unknown, ctx: ExecutionContext) => ctx.switchToHttp().getRequest<FastifyRequest>().principal,
);
