import { randomUUID } from 'node:crypto';
import { ArgumentsHost, Catch, ExceptionFilter } from '@nestjs/common';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { AppError, toErrorResponse } from './errors';

declare module 'fastify' {
  interface FastifyRequest {
    /** Filled in by the auth guard: what the access log and audit trail say about the caller. */
    actorId?: string;
    orgSlug?: string;
    /** A streaming route's Content-Type as the client sent it (see STREAM_BODY). */
    streamContentType?: string;
  }
}

/**
 * Route config (`@RouteConfig(STREAM_BODY)`) of a route whose handler reads the request body
 * itself, as a stream, whatever its type and size: no parser buffers it and the JSON body
 * limit does not apply. The handler enforces its own limit.
 */
export const STREAM_BODY = { streamBody: true } as const;
const STREAM_CONTENT_TYPE = 'application/x-coffer-stream';

function isStreamRoute(request: FastifyRequest): boolean {
  return (request.routeOptions.config as { streamBody?: boolean } | undefined)?.streamBody === true;
}

export const REQUEST_ID_HEADER = 'x-request-id';

export interface RegisteredRoute {
  method: string;
  url: string;
}

const ROUTES = new WeakMap<FastifyInstance, RegisteredRoute[]>();

/** Every route the router has, as registered: lets tests cover routes added later. */
export function registeredRoutes(fastify: FastifyInstance): readonly RegisteredRoute[] {
  return ROUTES.get(fastify) ?? [];
}

/** Options for the Fastify instance: our own request ids, never a client-chosen one. */
export function fastifyOptions(config: { bodyLimit: number; trustedProxies: string[] }) {
  return {
    bodyLimit: config.bodyLimit,
    genReqId: () => randomUUID(),
    requestIdHeader: false as const,
    trustProxy: config.trustedProxies.length ? config.trustedProxies : false,
    // A signed asset link's JWT is a path parameter (~400 characters; Fastify's default is 100).
    routerOptions: { maxParamLength: 1024 },
    logger: false,
  };
}

/**
 * Request id header, one access-log line per request, the JSON body parser. Create the Nest app
 * with `bodyParser: false` so that this parser is the only one.
 */
export function installHttpHooks(fastify: FastifyInstance, logger: Logger): void {
  const routes: RegisteredRoute[] = [];
  ROUTES.set(fastify, routes);
  fastify.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url });
  });
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
  // Nest maps Fastify's own errors to bare HttpExceptions, losing their code, so the JSON parser
  // is ours: Fastify's parser (with its prototype-poisoning checks) throwing our error code.
  // JSON is the only body type accepted (415 otherwise) until a route adds its own.
  fastify.removeContentTypeParser('text/plain');
  // A streaming route's body, of any declared type, goes to the one parser that passes the
  // stream through; the declared type is kept for the handler.
  fastify.addHook('preParsing', async (request, _reply, payload) => {
    if (isStreamRoute(request)) {
      request.streamContentType = request.headers['content-type'];
      request.headers['content-type'] = STREAM_CONTENT_TYPE;
    }
    return payload;
  });
  // A refused streaming request (denied, too large, invalid) closes its connection: otherwise
  // Node reads and discards the rest of its body to reuse the connection, however large it is.
  fastify.addHook('onSend', async (request, reply, payload) => {
    if (reply.statusCode >= 400 && isStreamRoute(request)) void reply.header('connection', 'close');
    return payload;
  });
  fastify.addContentTypeParser(STREAM_CONTENT_TYPE, (request, payload, done) => {
    if (!isStreamRoute(request)) return done(new AppError('unsupported_media_type', `${STREAM_CONTENT_TYPE} is not accepted here`), undefined);
    done(null, payload);
  });
  const parseJson = fastify.getDefaultJsonParser('error', 'error');
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) =>
    parseJson(request, body as string, (error, value) =>
      error ? done(new AppError('invalid_json', 'request body is not valid JSON'), undefined) : done(null, value),
    ),
  );
}

/**
 * Retry-After of the 503s that are expected to pass: the KMS health probe retries with backoff,
 * so a client need not come back sooner; database connections free up within moments.
 */
const RETRY_AFTER_SECONDS: Partial<Record<string, number>> = { kms_unavailable: 30, database_busy: 1 };

function sendError(error: unknown, request: FastifyRequest, reply: FastifyReply, logger: Logger) {
  const { status, body } = toErrorResponse(error, request.id);
  if (status >= 500) logUnexpected(logger, error, request.id);
  const retryAfter = RETRY_AFTER_SECONDS[body.error.code];
  if (retryAfter) void reply.header('retry-after', String(retryAfter));
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
