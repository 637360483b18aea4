import { applyDecorators } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiResponse } from '@nestjs/swagger';
import { z } from 'zod';
import { ERROR_STATUS, ErrorCode } from './errors';

/** The request body as documented: the same zod schema that validates it. */
export const ApiJsonBody = (schema: z.ZodType) =>
  ApiBody({ schema: z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as object });

/**
 * Documents the error codes a route can answer with, grouped by status. Every route may answer
 * kms_unavailable: checking an org API key opens its hash with the org's field key;
 * database_busy: checking it reads the database; and invalid_path_parameter: a path parameter
 * with a control character is refused.
 */
export const ApiErrors = (...codes: ErrorCode[]) => {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of ['unauthenticated', 'validation_failed', 'invalid_path_parameter', 'kms_unavailable', 'database_busy', ...codes] as ErrorCode[]) {
    byStatus.set(ERROR_STATUS[code], [...(byStatus.get(ERROR_STATUS[code]) ?? []), code]);
  }
  return applyDecorators(
    ApiBearerAuth(),
    ...[...byStatus].map(([status, list]) =>
      ApiResponse({ status, description: `error codes: ${[...new Set(list)].join(', ')}`, schema: { $ref: '#/components/schemas/Error' } }),
    ),
  );
};

export const ERROR_SCHEMA = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message', 'requestId'],
      properties: {
        code: { type: 'string', enum: Object.keys(ERROR_STATUS) },
        message: { type: 'string' },
        requestId: { type: 'string' },
        details: {},
      },
    },
  },
};
