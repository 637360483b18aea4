import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { ArgumentsHost, Catch, ExceptionFilter } from '@nestjs/common';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { captureError } from '@coffer/logging';
import { AppError, ERROR_MESSAGES, ERROR_STATUS, ErrorCode, errorBody, RetryLaterError, toErrorResponse } from './errors';

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

export function isStreamRoute(request: FastifyRequest): boolean {
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

/** What the answers written outside Fastify's hooks (framework and connection errors) need. */
interface ListenerState {
  logger?: Logger;
  /** Headers of every response (the security headers over HTTPS). */
  responseHeaders: Readonly<Record<string, string>>;
  closing: boolean;
}

const LISTENERS = new WeakMap<FastifyInstance, ListenerState>();

function listenerState(fastify: FastifyInstance): ListenerState {
  let state = LISTENERS.get(fastify);
  if (!state) LISTENERS.set(fastify, (state = { responseHeaders: {}, closing: false }));
  return state;
}

/**
 * Options for the Fastify instance: our own request ids, never a client-chosen one; and every
 * answer in Coffer's error shape, including those Fastify and Node's HTTP parser would write
 * themselves (a malformed URL, an overlong parameter, a request Node cannot parse, a request
 * arriving while the server closes).
 */
export function fastifyOptions(config: { bodyLimit: number; trustedProxies: string[] }) {
  return {
    bodyLimit: config.bodyLimit,
    genReqId: () => randomUUID(),
    requestIdHeader: false as const,
    trustProxy: config.trustedProxies.length ? config.trustedProxies : false,
    // A signed asset link's JWT is a path parameter (~400 characters; Fastify's default is 100).
    routerOptions: { maxParamLength: 1024 },
    logger: false,
    frameworkErrors,
    clientErrorHandler,
    // Fastify's own 503 has its shape and no security headers: the onRequest hook answers instead.
    return503OnClosing: false,
  };
}

/** Fastify's errors from before routing: a URL it cannot decode (400), an overlong parameter (414). */
function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const state = listenerState(request.server);
  const code: ErrorCode = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'uri_too_long' : error.statusCode === 400 ? 'bad_request' : 'internal_error';
  const status = ERROR_STATUS[code];
  const body = errorBody(code, ERROR_MESSAGES[code] ?? 'internal error; quote the request id to the operator', request.id);
  // No route context, so none of the hooks run: the headers and the access line are added here.
  void reply
    .code(status)
    .headers({ ...state.responseHeaders, [REQUEST_ID_HEADER]: request.id, 'content-type': 'application/json; charset=utf-8' })
    .send(JSON.stringify(body));
  state.logger?.info({ requestId: request.id, method: request.method, route: 'unmatched', status, durationMs: 0, ip: request.ip }, 'request');
}

/** Node's HTTP parser refused a request before Fastify saw it: answered as on every listener. */
function clientErrorHandler(this: FastifyInstance, error: Error & { code?: string }, socket: Socket): void {
  answerClientError(error, socket, listenerState(this));
}

/**
 * Node's HTTP parser refused the request (a malformed request line, headers over the limit,
 * conflicting Content-Length and Transfer-Encoding, a timeout): on any of Coffer's listeners
 * (`server.on('clientError', ...)` for one outside Fastify). Writes a complete HTTP/1.1 answer
 * in Coffer's shape with `responseHeaders`, unless part of a response went out already (as
 * Node's own handler), and closes the connection.
 */
export function answerClientError(
  error: Error & { code?: string },
  socket: Socket,
  state: { logger?: Logger; responseHeaders: Readonly<Record<string, string>> },
): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const code: ErrorCode =
    error.code === 'HPE_HEADER_OVERFLOW' ? 'header_too_large' : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'request_timeout' : 'bad_request';
  const status = ERROR_STATUS[code];
  const requestId = randomUUID();
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) {
    const body = JSON.stringify(errorBody(code, ERROR_MESSAGES[code]!, requestId));
    const headers: Record<string, string> = {
      ...state.responseHeaders,
      [REQUEST_ID_HEADER]: requestId,
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(body)),
      date: new Date().toUTCString(),
      connection: 'close',
    };
    const head = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${head}\r\n${body}`);
  }
  state.logger?.info({ requestId, route: 'unparsed', status, ip: socket.remoteAddress, reason: error.code }, 'request');
  // The answer is flushed by end(); a client that never reads it does not hold the socket.
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** The access line of a request: method, route template, status, duration, org, actor, request id, client IP. */
function logAccess(logger: Logger, request: FastifyRequest, status: number, durationMs: number): void {
  // A raw URL can carry a token (signed links): the route template only.
  logger.info(
    {
      requestId: request.id,
      method: request.method,
      route: request.routeOptions.url ?? 'unmatched',
      status,
      durationMs: Math.round(durationMs * 10) / 10,
      org: request.orgSlug,
      actor: request.actorId,
      ip: request.ip,
    },
    'request',
  );
}

/** Whether a request announces no body: no Transfer-Encoding, and no Content-Length or 0. */
function declaresNoBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] === undefined && (length === undefined || length === '0');
}

/** Requests refused for their body (before it was read): their connection is not reused. */
const REFUSED_BODY = new WeakSet<FastifyRequest>();

/**
 * Request id header, one access-log line per request, the JSON body parser. Create the Nest app
 * with `bodyParser: false` so that this parser is the only one. `responseHeaders` go on the
 * answers written outside Fastify's hooks (pass the security headers over HTTPS).
 *
 * Closing (SIGTERM: Nest's shutdown hooks close the app): new requests get 503 and requests in
 * flight finish, for at most `shutdownGraceMs`; then the connections still open are closed. Both
 * moments are logged.
 */
export function installHttpHooks(
  fastify: FastifyInstance,
  logger: Logger,
  options: { responseHeaders?: Readonly<Record<string, string>>; shutdownGraceMs?: number } = {},
): void {
  const state = listenerState(fastify);
  state.logger = logger;
  state.responseHeaders = options.responseHeaders ?? {};
  const routes: RegisteredRoute[] = [];
  ROUTES.set(fastify, routes);
  fastify.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url });
  });
  fastify.addHook('preClose', async () => {
    state.closing = true;
    const open = await new Promise<number>((resolve) => fastify.server.getConnections((_, count) => resolve(count)));
    logger.info({ openConnections: open, graceMs: options.shutdownGraceMs ?? null }, 'shutting down: new requests get 503, requests in flight finish');
    if (options.shutdownGraceMs === undefined) return;
    setTimeout(() => {
      fastify.server.getConnections((_, count) => {
        if (count) logger.warn({ openConnections: count }, 'shutdown grace period over: closing the connections still open');
        fastify.server.closeAllConnections();
      });
    }, options.shutdownGraceMs).unref();
  });
  fastify.addHook('onRequest', async (request, reply) => {
    reply.header(REQUEST_ID_HEADER, request.id);
    if (state.closing) {
      REFUSED_BODY.add(request);
      throw new AppError('service_unavailable', 'the server is shutting down; retry');
    }
  });
  fastify.addHook('onResponse', async (request, reply) => logAccess(logger, request, reply.statusCode, reply.elapsedTime));
  // Nest maps Fastify's own errors to bare HttpExceptions, losing their code, so the JSON parser
  // is ours: Fastify's parser (with its prototype-poisoning checks) throwing our error code.
  // JSON is the only body type accepted (415 otherwise) until a route adds its own.
  fastify.removeContentTypeParser('text/plain');
  // A streaming route's body, of any declared type, goes to the one parser that passes the
  // stream through; the declared type is kept for the handler. On other routes, a request that
  // announces no body has none, whatever its Content-Type (clients send `Content-Type:
  // application/json` on every request; a route that needs a body says so, ZodValidationPipe),
  // and a body in a content coding is refused: nothing is decoded here, and gzip parsed as JSON
  // would only be "not valid JSON".
  fastify.addHook('preParsing', async (request, reply, payload) => {
    if (isStreamRoute(request)) {
      request.streamContentType = request.headers['content-type'];
      request.headers['content-type'] = STREAM_CONTENT_TYPE;
    } else if (declaresNoBody(request)) {
      delete request.headers['content-type'];
    } else if (!/^[ \t]*(identity[ \t]*)?$/i.test(request.headers['content-encoding'] ?? '')) {
      REFUSED_BODY.add(request);
      void reply.header('accept-encoding', 'identity');
      throw new AppError('unsupported_content_encoding', 'Content-Encoding is not supported; send the body uncompressed');
    }
    return payload;
  });
  // A refused streaming request (denied, too large, invalid) closes its connection: otherwise
  // Node reads and discards the rest of its body to reuse the connection, however large it is.
  fastify.addHook('onSend', async (request, reply, payload) => {
    if (reply.statusCode >= 400 && (isStreamRoute(request) || REFUSED_BODY.has(request))) void reply.header('connection', 'close');
    return payload;
  });
  fastify.addContentTypeParser(STREAM_CONTENT_TYPE, (request, payload, done) => {
    if (!isStreamRoute(request)) return done(new AppError('unsupported_media_type', `${STREAM_CONTENT_TYPE} is not accepted here`), undefined);
    done(null, payload);
  });
  const parseJson = fastify.getDefaultJsonParser('error', 'error');
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    // An empty body (chunked, with no chunk) is no body, as one announced by its headers.
    if ((body as string).length === 0) return done(null, undefined);
    parseJson(request, body as string, (error, value) =>
      error ? done(new AppError('invalid_json', 'request body is not valid JSON'), undefined) : done(null, value),
    );
  });
  // Any other type: an empty chunked body is no body; the first byte of one is 415.
  fastify.addContentTypeParser('*', (request, payload, done) => {
    const refusal = () => new AppError('unsupported_media_type', ERROR_MESSAGES.unsupported_media_type!);
    if (!declaresChunkedOnly(request)) return done(refusal(), undefined);
    let settled = false;
    const settle = (error: Error | null) => {
      if (settled) return;
      settled = true;
      payload.removeAllListeners('data');
      if (error) payload.pause();
      done(error, undefined);
    };
    payload.once('data', () => settle(refusal()));
    payload.once('end', () => settle(null));
    payload.once('error', (error: Error) => settle(error));
  });
}

/** A body sent chunked, with no Content-Length: whether it is empty is known only once it ends. */
function declaresChunkedOnly(request: FastifyRequest): boolean {
  return request.headers['transfer-encoding'] !== undefined && request.headers['content-length'] === undefined;
}

/**
 * The streaming route's body, for its handler. A client that goes away before the body is
 * complete is its own doing: the error is `client_closed_request` (499), not an internal error,
 * in the audit entry and the access log.
 */
export async function* streamedBody(request: FastifyRequest): AsyncGenerator<Buffer> {
  const body = request.body as AsyncIterable<Buffer> | undefined;
  if (body) {
    try {
      for await (const chunk of body) yield chunk;
    } catch (error) {
      if (clientGone(request)) throw clientClosed();
      throw error;
    }
  }
  if (clientGone(request)) throw clientClosed();
}

function clientGone(request: FastifyRequest): boolean {
  const raw = request.raw;
  return raw.readableAborted || (!raw.complete && (raw.destroyed || raw.socket?.destroyed === true));
}

function clientClosed(): AppError {
  return new AppError('client_closed_request', 'the client closed the connection before the body was complete');
}

/**
 * Retry-After of the 503s that are expected to pass: the KMS health probe retries with backoff,
 * so a client need not come back sooner; database connections free up within moments. A
 * RetryLaterError (a limit's 429) says its own.
 */
const RETRY_AFTER_SECONDS: Partial<Record<string, number>> = { kms_unavailable: 30, database_busy: 1 };

function sendError(error: unknown, request: FastifyRequest, reply: FastifyReply, logger: Logger) {
  const { status, body } = toErrorResponse(error, request.id);
  if (body.error.code === 'client_closed_request') {
    // The client is gone: nothing to send, nothing unexpected (no stack), one access line.
    logger.warn({ requestId: request.id, route: request.routeOptions.url, org: request.orgSlug, actor: request.actorId }, 'client closed the request before it completed');
    reply.code(status);
    logAccess(logger, request, status, reply.elapsedTime);
    if (!reply.raw.destroyed) reply.raw.destroy();
    return;
  }
  if (status >= 500) logUnexpected(logger, error, request.id);
  // Reported: the unexpected, not a 4xx (the client's doing) nor a 503 (an outage the alerts cover).
  if (status >= 500 && status !== 503) captureError(error, { requestId: request.id, method: request.method, route: request.routeOptions.url ?? 'unmatched' });
  const retryAfter = error instanceof RetryLaterError ? error.retryAfterSeconds : RETRY_AFTER_SECONDS[body.error.code];
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
