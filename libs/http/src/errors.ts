import { HttpException } from '@nestjs/common';

/**
 * Every error code the API can answer with, and its status. Codes are a public contract
 * (documented in the OpenAPI document): add new ones, never rename.
 */
export const ERROR_STATUS = {
  invalid_json: 400,
  validation_failed: 400,
  bad_request: 400,
  unauthenticated: 401,
  invalid_link: 401,
  link_expired: 401,
  forbidden: 403,
  https_required: 403,
  link_revoked: 403,
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
  organization_exists: 409,
  user_email_taken: 409,
  user_disabled: 409,
  payload_too_large: 413,
  package_too_large: 413,
  unsupported_media_type: 415,
  range_not_satisfiable: 416,
  audit_destination_unreachable: 422,
  internal_error: 500,
  audit_limit_exceeded: 500,
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

export interface ErrorBody {
  error: { code: string; message: string; requestId: string; details?: unknown };
}

const BY_STATUS: Record<number, ErrorCode> = {
  400: 'bad_request',
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'route_not_found',
  405: 'method_not_allowed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  503: 'service_unavailable',
};

/**
 * Maps anything thrown to a status and a safe body. Only AppError messages reach the client
 * verbatim; anything unexpected becomes internal_error, so no stack, SQL or value leaks.
 */
export function toErrorResponse(error: unknown, requestId: string): { status: number; body: ErrorBody } {
  const make = (status: number, code: string, message: string, details?: unknown) => ({
    status,
    body: { error: { code, message, requestId, ...(details === undefined ? {} : { details }) } },
  });
  if (error instanceof AppError) return make(error.status, error.code, error.message, error.details);

  const status =
    error instanceof HttpException ? error.getStatus() : Number((error as { statusCode?: number } | null)?.statusCode) || 500;
  const code = BY_STATUS[status];
  if (status < 500 && code) {
    const message = code === 'route_not_found' ? 'no such route' : error instanceof Error ? error.message : code;
    return make(status, code, message);
  }
  return make(500, 'internal_error', 'internal error; quote the request id to the operator');
}
