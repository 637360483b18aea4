import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuditService } from '@coffer/audit';
import { BearerToken, parseBearerToken } from '@coffer/crypto';
import { AppError, controlCharacterInParams, RetryLaterError, sanitizedParams } from '@coffer/http';
import { ApiKeysService } from '@coffer/users';
import { ABUSE_LIMIT_KEY, AbuseLimits, RefusalEntry } from './abuse-limits';
import { Access, ACCESS_KEY } from './access.decorators';
import { actorId, OrgRef, OrgRegistry, Principal } from '@coffer/tenancy';
import { OrgRequestGate } from './org-request-gate';
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
    private readonly limits: AbuseLimits,
    private readonly gate: OrgRequestGate,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const access =
      this.reflector.getAllAndOverride<Access>(ACCESS_KEY, [context.getHandler(), context.getClass()]) ?? DENY_BY_DEFAULT;
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    // A public route's caller has no name: refused, not audited, as a 401 is not.
    if (access.kind === 'public') {
      if (controlCharacterInParams(request.params)) throw invalidPathParameter();
      if (this.abuseLimit(context) === 'asset_links') await this.limits.assetLinkRequest(request, () => this.failureEntry(context, request));
      return true;
    }

    const principal = await this.authenticate(context, request);
    request.principal = principal;
    request.actorId = actorId(principal);
    await this.refuseControlCharacters(context, request, principal);
    try {
      await this.authorize(access, principal, request);
    } catch (error) {
      // A known caller denied, a mutation or a read (a member probing the audit log): their own
      // org's chain (or the control plane's) says so.
      await this.audit.recordFailure(this.failureEntry(context, request, principal), error);
      throw error;
    }
    if (request.org) await this.admit(context, request, principal, request.org);
    return true;
  }

  /** The entry of a request refused here: as its caller, in their own chain (or the control plane's). */
  private failureEntry(context: ExecutionContext, request: FastifyRequest, principal?: Principal): RefusalEntry {
    return {
      actor: actorOf(principal),
      source: requestSource(request),
      chain: () => this.audit.chain(request.principalOrg),
      automatic: {
        action: automaticAction(this.reflector, context, request) ?? `${request.method} ${request.routeOptions.url}`,
        target: () => targetOf(request),
      },
    };
  }

  private abuseLimit(context: ExecutionContext): string | undefined {
    return this.reflector.get<string>(ABUSE_LIMIT_KEY, context.getHandler());
  }

  /**
   * The org's turn in this process (OrgRequestGate), then an upload slot if the route takes one;
   * both held until the response closes. Past the queue, 429 (audited once a minute per org).
   */
  private async admit(context: ExecutionContext, request: FastifyRequest, principal: Principal, org: OrgRef): Promise<void> {
    const response = context.switchToHttp().getResponse<FastifyReply>().raw;
    const entry = () => this.failureEntry(context, request, principal);
    try {
      await this.gate.enter(org.id, response);
    } catch (error) {
      if (error instanceof RetryLaterError) await this.limits.refuse(entry, { limit: 'org_requests', subject: org.id }, error);
      throw error;
    }
    if (this.abuseLimit(context) === 'uploads') await this.limits.uploadSlot(org, response, entry);
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

  private async authorize(access: Access, principal: Principal, request: FastifyRequest): Promise<void> {
    if (access.kind === 'public') return;
    if (access.kind === 'platform_admin') {
      if (principal.kind !== 'platform_admin') throw new AppError('forbidden', 'this route is for the platform admin');
      return;
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
  }

  /**
   * The caller, from their bearer token. The failure limits (AbuseLimits) are checked first, in
   * Redis alone, so a flood of guesses costs no database lookup; each failure counts against the
   * client's address and the key id presented.
   */
  private async authenticate(context: ExecutionContext, request: FastifyRequest): Promise<Principal> {
    const header = request.headers.authorization;
    const match = header ? /^Bearer ([^\s]+)$/i.exec(header) : null;
    if (!match) throw new AppError('unauthenticated', 'missing bearer token');
    const token = parseBearerToken(match[1]);
    const keyId = token && (token.kind === 'platform' ? `platform.${token.tokenId}` : `${token.orgId}.${token.keyId}`);
    await this.limits.beforeAuthentication(request, keyId, () => this.failureEntry(context, request));
    const principal = token && (await this.verify(token, request));
    if (!principal) {
      await this.limits.authenticationFailed(request, keyId);
      throw new AppError('unauthenticated', 'invalid, expired or revoked token');
    }
    return principal;
  }

  /** The principal of a token whose secret matches and which is active; undefined for any other. */
  private async verify(token: BearerToken, request: FastifyRequest): Promise<Principal | undefined> {
    if (token.kind === 'platform') {
      return (await this.platformTokens.verify(token.tokenId, token.secret)) ? { kind: 'platform_admin', tokenId: token.tokenId } : undefined;
    }
    const org = await this.orgs.resolveById(token.orgId);
    const key = org && (await this.apiKeys.verify(org, token.keyId, token.secret));
    if (!key) return undefined;
    request.principalOrg = org;
    return { kind: 'user', orgId: token.orgId, userId: key.userId, apiKeyId: key.keyId, role: key.role };
  }
}

function invalidPathParameter(): AppError {
  return new AppError('invalid_path_parameter', 'a path parameter holds a control character');
}
