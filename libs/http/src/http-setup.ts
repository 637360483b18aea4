import { randomUUID } from 'node:crypto';
import { ArgumentsHost, Catch, ExceptionFilter } from '@nestjs/common';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { toErrorResponse } from './errors';

declare module 'fastify' {
  interface FastifyRequest {
    /** Filled in by the auth guard: what the access log and audit trail say about the caller. */
    actorId?: string;
    orgSlug?: string;
  }
}

export const REQUEST_ID_HEADER = 'x-request-id';

/** Options for the Fastify instance: our own request ids, never a client-chosen one. */
export function fastifyOptions(config: { bodyLimit: number; trustedProxies: string[] }) {
  return {
    bodyLimit: config.bodyLimit,
    genReqId: () => randomUUID(),
    requestIdHeader: false as const,
    trustProxy: config.trustedProxies.length ? config.trustedProxies : false,
    logger: false,
  };
}

/**
 * Request id header, one access-log line per request, and errors that happen before Nest's
 * pipeline (body parsing, limits) in the same shape as every other error.
 */
export function installHttpHooks(fastify: FastifyInstance, logger: Logger): void {
  fastify.addHook('onRequest', async (request, reply) => {
    reply.header(REQUEST_ID_HEADER, request.id);
  });
  fastify.addHook('onResponse', async (request, reply) => {
    logger.info(
      {
        requestId: request.id,
        method: request.method,
        // The route template, not the raw URL: a raw URL can carry a token (signed links).
        route: request.routeOptions.url ?? 'unmatched',
        status: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime * 10) / 10,
        org: request.orgSlug,
        actor: request.actorId,
        ip: request.ip,
      },
      'request',
    );
  });
  fastify.setErrorHandler((error, request, reply) => sendError(error, request, reply, logger));
}

function sendError(error: unknown, request: FastifyRequest, reply: FastifyReply, logger: Logger) {
  const { status, body } = toErrorResponse(error, request.id);
  if (status >= 500) logUnexpected(logger, error, request.id);
  void reply.status(status).header('content-type', 'application/json; charset=utf-8').send(body);
}

/** Only the error's class, code and message: pg's `detail` would repeat the offending values. */
function logUnexpected(logger: Logger, error: unknown, requestId: string) {
  const e = error as { name?: string; code?: string; message?: string; stack?: string };
  logger.error({ requestId, err: { name: e?.name, code: e?.code, message: e?.message, stack: e?.stack } }, 'request failed');
}

@Catch()
export class AllExceptionsFilter implements ExceptionFilter {
  constructor(private readonly logger: Logger) {}

  catch(error: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    sendError(error, http.getRequest<FastifyRequest>(), http.getResponse<FastifyReply>(), this.logger);
  }
}
