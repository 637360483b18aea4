import type { OpenAPIObject } from '@nestjs/swagger';
import { z } from 'zod';
import type { AppConfig } from '@coffer/config';
import { canonicalPositiveInteger, completeDocument, jsonSchema, PathParameterDoc } from '@coffer/http';
import { PackageName } from '@coffer/packages';
import { SLUG_PATTERN } from '@coffer/tenancy';

/** The answers of the routes that have no library of their own (health, this document). */
export const HealthLiveAnswer = z.strictObject({ status: z.literal('ok') });
export const HealthReadyAnswer = z.strictObject({
  status: z.enum(['ok', 'degraded', 'unavailable']),
  checks: z.strictObject({ postgres: z.enum(['ok', 'down']), redis: z.enum(['ok', 'down']), kms: z.enum(['ok', 'down']) }),
});
export const OpenApiAnswer = z.looseObject({
  openapi: z.string(),
  info: z.looseObject({ title: z.string(), version: z.string() }),
  paths: z.record(z.string(), z.unknown()),
});

/** Every path parameter of the API, by name, as the routes read it. */
const PATH_PARAMETERS: Record<string, PathParameterDoc> = {
  org: { description: "the organization's slug", schema: { type: 'string', pattern: SLUG_PATTERN.source } },
  userId: { description: "a user's id", schema: { type: 'string' } },
  keyId: { description: "an API key's id", schema: { type: 'string' } },
  name: { description: "a package's name", schema: jsonSchema(PackageName, 'input'), validated: true },
  version: {
    description: 'a version number, written canonically (`2`, never `02`, `2.0` or `+2`)',
    schema: jsonSchema(canonicalPositiveInteger(), 'input'),
    validated: true,
  },
  id: { description: "the id of what the path names (a certificate's, a pending write's)", schema: { type: 'string' } },
  linkId: { description: "a signed link's id: the `id` its creation answered", schema: { type: 'string' } },
  token: { description: "a signed link's token: the last segment of the `url` its creation answered", schema: { type: 'string' } },
};

/**
 * The OpenAPI document served at /api/v1/openapi.json: SwaggerModule's, completed (every path
 * parameter, security per route, every error code, settings-bound limits as configured here).
 */
export function describeApi(document: OpenAPIObject, config: AppConfig): OpenAPIObject {
  return completeDocument(document, { settings: config, pathParameters: PATH_PARAMETERS });
}
