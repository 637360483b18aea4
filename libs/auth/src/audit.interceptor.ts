import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { from, lastValueFrom, Observable } from 'rxjs';
import { AuditService } from '@coffer/audit';
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
        work: () => lastValueFrom(next.handle(), { defaultValue: undefined }),
      }),
    );
  }
}
