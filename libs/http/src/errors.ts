import { HttpException } from '@nestjs/common';

/**
 * Every error code the API can answer with, and its status. Codes are a public contract
 * (documented in the OpenAPI document): add new ones, never rename.
 */
export const ERROR_STATUS = {
  invalid_json: 400,
  validation_failed: 400,
  bad_request: 400,
  invalid_path_parameter: 400,
  /** An outbound destination the egress policy refuses (an internal address or name): OUTBOUND_ALLOWED_HOSTS. */
  destination_not_allowed: 400,
  unauthenticated: 401,
  invalid_link: 401,
  link_expired: 401,
  forbidden: 403,
  https_required: 403,
  link_revoked: 403,
  /** The platform admin may not mint a key for an org's user: it would act as them. */
  impersonation_refused: 403,
  route_not_found: 404,
  organization_not_found: 404,
  user_not_found: 404,
  api_key_not_found: 404,
  audit_destination_not_found: 404,
  certificate_not_found: 404,
  package_not_found: 404,
  package_version_not_found: 404,
  pending_write_not_found: 404,
  method_not_allowed: 405,
  request_timeout: 408,
  organization_exists: 409,
  user_email_taken: 409,
  user_disabled: 409,
  /** Disabling the org's last active admin would leave nobody to manage it. */
  last_admin: 409,
  payload_too_large: 413,
  package_too_large: 413,
  uri_too_long: 414,
  unsupported_media_type: 415,
  unsupported_content_encoding: 415,
  range_not_satisfiable: 416,
  audit_destination_unreachable: 422,
  /** Too many failed authentications from the client's address, or for the key id it presented (Retry-After). */
  authentication_rate_limited: 429,
  /** Too many anonymous asset-link requests from the client's address (Retry-After). */
  asset_link_rate_limited: 429,
  /** The org has as many uploads running as it may, on all replicas together (Retry-After). */
  concurrent_uploads_exceeded: 429,
  /** The org has as many requests running and waiting in this API process as it may (Retry-After). */
  organization_busy: 429,
  header_too_large: 431,
  /** The client went away before the answer (nginx's 499): recorded in the audit entry and the access log, never sent. */
  client_closed_request: 499,
  internal_error: 500,
  audit_limit_exceeded: 500,
  /** The checkpoint job found the audit chain broken since its last anchor, and signed nothing. */
  audit_chain_broken: 500,
  field_decryption_failed: 500,
  package_integrity_failed: 500,
  service_unavailable: 503,
  kms_unavailable: 503,
  database_busy: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class AppError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.status = ERROR_STATUS[code];
  }
}

/** A refusal that passes with time (a rate or concurrency limit): answered with Retry-After. */
export class RetryLaterError extends AppError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(code, message);
  }
}

export interface ErrorBody {
  error: { code: string; message: string; requestId: string; details?: unknown };
}

const BY_STATUS: Record<number, ErrorCode> = {
  400: 'bad_request',
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'route_not_found',
  405: 'method_not_allowed',
  408: 'request_timeout',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  431: 'header_too_large',
};

/**
 * What the client is told when the error is not an AppError (Fastify's, Nest's, Node's): a
 * fixed sentence per code, never the error's own message, which can repeat the request (a URL,
 * a header, a media type) or name the framework.
 */
export const ERROR_MESSAGES: Partial<Record<ErrorCode, string>> = {
  bad_request: 'malformed request',
  unauthenticated: 'missing or invalid credentials',
  forbidden: 'forbidden',
  route_not_found: 'no such route',
  method_not_allowed: 'method not allowed',
  request_timeout: 'the request did not arrive in time',
  payload_too_large: 'request body too large',
  uri_too_long: 'request URL or path parameter too long',
  unsupported_media_type: 'unsupported Content-Type; this route takes application/json',
  header_too_large: 'request header fields too large',
  authentication_rate_limited: 'too many failed authentications; retry later',
  asset_link_rate_limited: 'too many asset-link requests; retry later',
  concurrent_uploads_exceeded: 'the organization has as many uploads running as it may; retry later',
  organization_busy: 'the organization has too many requests in progress; retry later',
  service_unavailable: 'service unavailable; retry later',
};

/** The documented error body. */
export function errorBody(code: string, message: string, requestId: string, details?: unknown): ErrorBody {
  return { error: { code, message, requestId, ...(details === undefined ? {} : { details }) } };
}

/**
 * Maps anything thrown to a status and a safe body. Only AppError messages reach the client
 * verbatim; anything unexpected becomes internal_error, so no stack, SQL or value leaks. A 4xx
 * from below (Fastify, Nest) keeps its status when it has a code for it (another of Fastify's or
 * Nest's is a 400 bad_request) and gets that code's fixed message.
 */
export function toErrorResponse(error: unknown, requestId: string): { status: number; body: ErrorBody } {
  if (error instanceof AppError) return { status: error.status, body: errorBody(error.code, error.message, requestId, error.details) };

  const status =
    error instanceof HttpException ? error.getStatus() : Number((error as { statusCode?: number } | null)?.statusCode) || 500;
  if (status >= 400 && status < 500) {
    // Another 4xx of the framework's own is still the client's doing; a dependency's is not.
    const code = BY_STATUS[status] ?? (isFrameworkError(error) ? 'bad_request' : undefined);
    if (code) return { status: ERROR_STATUS[code], body: errorBody(code, ERROR_MESSAGES[code] ?? code, requestId) };
  }
  return { status: 500, body: errorBody('internal_error', 'internal error; quote the request id to the operator', requestId) };
}

function isFrameworkError(error: unknown): boolean {
  return error instanceof HttpException || /^FST_/.test(String((error as { code?: unknown } | null)?.code ?? ''));
}
