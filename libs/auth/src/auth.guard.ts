import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { AuditService } from '@coffer/audit';
import { parseBearerToken } from '@coffer/crypto';
import { AppError, controlCharacterInParams, sanitizedParams } from '@coffer/http';
import { ApiKeysService } from '@coffer/users';
import { Access, ACCESS_KEY } from './access.decorators';
import { actorId, OrgRegistry, Principal } from '@coffer/tenancy';
import { actorOf, automaticAction, requestSource, targetOf } from './request-audit';
import { PlatformTokensService } from './platform-tokens.service';

const DENY_BY_DEFAULT: Access = { kind: 'platform_admin' };

@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly orgs: OrgRegistry,
    private readonly apiKeys: ApiKeysService,
    private readonly platformTokens: PlatformTokensService,
    private readonly audit: AuditService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const access =
      this.reflector.getAllAndOverride<Access>(ACCESS_KEY, [context.getHandler(), context.getClass()]) ?? DENY_BY_DEFAULT;
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    // A public route's caller has no name: refused, not audited, as a 401 is not.
    if (access.kind === 'public') {
      if (controlCharacterInParams(request.params)) throw invalidPathParameter();
      return true;
    }

    const principal = await this.authenticate(request);
    request.principal = principal;
    request.actorId = actorId(principal);
    await this.refuseControlCharacters(context, request, principal);
    try {
      return await this.authorize(access, principal, request);
    } catch (error) {
      // A known caller denied, a mutation or a read (a member probing the audit log): their own
      // org's chain (or the control plane's) says so.
      const action = automaticAction(this.reflector, context, request) ?? `${request.method} ${request.routeOptions.url}`;
      await this.audit.recordFailure(
        {
          actor: actorOf(principal),
          source: requestSource(request),
          chain: () => this.audit.chain(request.principalOrg),
          automatic: { action, target: () => targetOf(request) },
        },
        error,
      );
      throw error;
    }
  }

  /**
   * A path parameter with a control character (`%00` and the like) is refused before anything
   * reads it (PostgreSQL cannot even take a NUL), read or mutation, allowed or not: one failure
   * entry in the caller's own chain (an org user's org, else the control plane), the parameters
   * escaped.
   */
  private async refuseControlCharacters(context: ExecutionContext, request: FastifyRequest, principal: Principal): Promise<void> {
    if (!controlCharacterInParams(request.params)) return;
    const error = invalidPathParameter();
    await this.audit.recordFailure(
      {
        actor: actorOf(principal),
        source: requestSource(request),
        chain: () => this.audit.chain(request.principalOrg),
        automatic: {
          action: automaticAction(this.reflector, context, request) ?? `${request.method} ${request.routeOptions.url}`,
          target: () => sanitizedParams(request.params),
        },
      },
      error,
    );
    throw error;
  }

  private async authorize(access: Access, principal: Principal, request: FastifyRequest): Promise<boolean> {
    if (access.kind === 'public') return true;
    if (access.kind === 'platform_admin') {
      if (principal.kind !== 'platform_admin') throw new AppError('forbidden', 'this route is for the platform admin');
      return true;
    }

    const slug = (request.params as Record<string, string | undefined>).org;
    if (!slug) throw new Error('OrgAccess on a route without an :org parameter');
    const org = await this.orgs.resolve(slug);
    if (principal.kind === 'platform_admin') {
      if (!access.platformAdmin) throw new AppError('forbidden', 'this route is for members of the organization');
    } else {
      // Another org's caller learns nothing, not even that the org exists.
      if (principal.orgId !== org.id) throw new AppError('organization_not_found', 'no such organization');
      if (!access.roles.includes(principal.role)) throw new AppError('forbidden', 'your role may not do this');
    }
    request.org = org;
    request.orgSlug = org.slug;
    return true;
  }

  private async authenticate(request: FastifyRequest): Promise<Principal> {
    const header = request.headers.authorization;
    const match = header ? /^Bearer ([^\s]+)$/i.exec(header) : null;
    if (!match) throw new AppError('unauthenticated', 'missing bearer token');
    // Built only when thrown: an Error captures a stack, which is costly on the hot path.
    const invalid = () => new AppError('unauthenticated', 'invalid, expired or revoked token');
    const token = parseBearerToken(match[1]);
    if (!token) throw invalid();
    if (token.kind === 'platform') {
      if (await this.platformTokens.verify(token.tokenId, token.secret)) return { kind: 'platform_admin', tokenId: token.tokenId };
      throw invalid();
    }
    const org = await this.orgs.resolveById(token.orgId);
    const key = org && (await this.apiKeys.verify(org, token.keyId, token.secret));
    if (!key) throw invalid();
    request.principalOrg = org;
    return { kind: 'user', orgId: token.orgId, userId: key.userId, apiKeyId: key.keyId, role: key.role };
  }
}

function invalidPathParameter(): AppError {
  return new AppError('invalid_path_parameter', 'a path parameter holds a control character');
}
