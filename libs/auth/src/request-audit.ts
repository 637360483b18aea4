import { ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { AUDIT_ACTION_KEY, AUDIT_READ_KEY, truncateUserAgent } from '@coffer/audit';
import type { Actor, Principal, RequestSource } from '@coffer/tenancy';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function isMutation(request: FastifyRequest): boolean {
  return !SAFE_METHODS.has(request.method);
}

/** The client's address (X-Forwarded-For only from TRUSTED_PROXIES: Fastify's trustProxy), UA, id. */
export function requestSource(request: FastifyRequest): RequestSource {
  return { requestId: request.id, clientIp: request.ip ?? null, userAgent: truncateUserAgent(request.headers['user-agent']) };
}

export function actorOf(principal: Principal | undefined): Actor {
  if (!principal) return { kind: 'anonymous', id: 'anonymous' };
  if (principal.kind === 'platform_admin') return { kind: 'platform_admin', id: `platform_admin:${principal.tokenId}`, tokenId: principal.tokenId };
  return { kind: 'user', id: `user:${principal.userId}`, userId: principal.userId, apiKeyId: principal.apiKeyId, role: principal.role };
}

/** The automatic entry's action: a mutation always has one, a read only when marked sensitive. */
export function automaticAction(reflector: Reflector, context: ExecutionContext, request: FastifyRequest): string | undefined {
  const targets = [context.getHandler(), context.getClass()];
  if (isMutation(request)) {
    return reflector.getAllAndOverride<string>(AUDIT_ACTION_KEY, targets) ?? `${request.method} ${request.routeOptions.url}`;
  }
  return reflector.getAllAndOverride<string>(AUDIT_READ_KEY, targets);
}

/** The route's parameters, and the id of what it created or changed when the answer names one. */
export function targetOf(request: FastifyRequest, result?: unknown): Record<string, unknown> | null {
  const target: Record<string, unknown> = { ...(request.params as Record<string, unknown>) };
  if (request.org) target.orgId = request.org.id;
  const id = resultId(result);
  if (id) target.id = id;
  return Object.keys(target).length ? target : null;
}

function resultId(result: unknown): string | undefined {
  if (!result || typeof result !== 'object') return undefined;
  const record = result as Record<string, unknown>;
  if (typeof record.id === 'string') return record.id;
  for (const value of Object.values(record)) {
    if (value && typeof value === 'object' && typeof (value as { id?: unknown }).id === 'string') return (value as { id: string }).id;
  }
  return undefined;
}
