import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { from, lastValueFrom, Observable } from 'rxjs';
import { AuditService } from '@coffer/audit';
import { AppError, isStreamRoute } from '@coffer/http';
import { ApiKeysService } from '@coffer/users';
import { actorOf, automaticAction, isMutation, requestSource, targetOf } from './request-audit';

/**
 * Every route runs in the one transaction scope (AuditService.run). A mutation runs in a unit of
 * work and gets an automatic entry (action, actor, target, outcome) committed with its change,
 * or, when it fails, an entry with its error code in a transaction of its own. Reads get an
 * entry when marked @AuditRead, plus whatever their handler records. Failures before this point
 * (denied by the guard) are recorded by the guard.
 */
@Injectable()
export class AuditInterceptor implements NestInterceptor {
  constructor(
    private readonly audit: AuditService,
    private readonly reflector: Reflector,
    private readonly apiKeys: ApiKeysService,
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    const action = automaticAction(this.reflector, context, request);
    return from(
      this.audit.run({
        actor: actorOf(request.principal),
        source: requestSource(request),
        transactional: isMutation(request),
        chain: (org) => this.audit.chain(request.org ?? org ?? request.principalOrg),
        automatic: action ? { action, target: (result) => targetOf(request, result) } : undefined,
        work: async () => {
          const result = await lastValueFrom(next.handle(), { defaultValue: undefined });
          if (isStreamRoute(request)) await this.recheckPrincipal(request);
          return result;
        },
      }),
    );
  }

  /**
   * A streamed upload commits only if its caller may still act: one that streams for minutes
   * must not commit after its user was disabled or its key revoked meanwhile. Read afresh, in
   * the upload's own transaction (its connection: no second one from the org's share), which
   * sees what others have committed.
   */
  private async recheckPrincipal(request: FastifyRequest): Promise<void> {
    const { principal, principalOrg } = request;
    if (principal?.kind !== 'user' || !principalOrg) return;
    if (!(await this.apiKeys.stillValid(principalOrg, principal.apiKeyId))) {
      throw new AppError('unauthenticated', 'the API key was revoked, or its user disabled, while the request ran; nothing was changed');
    }
  }
}
