import { applyDecorators } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiExtension, ApiQuery, ApiResponse } from '@nestjs/swagger';
import type { OpenAPIObject } from '@nestjs/swagger';
import { z } from 'zod';
import { ERROR_STATUS, ErrorCode } from './errors';

type Json = Record<string, unknown>;

/**
 * The JSON Schema (draft 2020-12, the dialect of OpenAPI 3.1) of a zod schema: what a request
 * may send (`input`: before defaults and transforms) or what an answer holds (`output`: objects
 * closed with `additionalProperties: false`, so that a field the schema does not name fails the
 * e2e check of live answers, test/e2e/openapi.e2e.spec.ts).
 */
export function jsonSchema(schema: z.ZodType, io: 'input' | 'output' = 'output'): Json {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Json;
  return rest;
}

/** An instant in an answer: a Date serialized by JSON.stringify (ISO 8601, UTC). */
export const Instant = z.string().meta({ format: 'date-time' });

/** The request body as documented: the same zod schema that validates it. */
export const ApiJsonBody = (schema: z.ZodType) => ApiBody({ schema: jsonSchema(schema, 'input') as object });

/** The query parameters as documented: one per field of the zod object that validates them. */
export const ApiJsonQuery = (schema: z.ZodObject) => {
  const { properties = {}, required = [] } = jsonSchema(schema, 'input') as { properties?: Record<string, Json>; required?: string[] };
  return applyDecorators(
    ...Object.entries(properties).map(([name, property]) =>
      ApiQuery({ name, required: required.includes(name), description: property.description as string | undefined, schema: property as object }),
    ),
  );
};

/** A success answer in JSON, described by the zod schema of what the handler returns. */
export const ApiResult = (status: number, schema: z.ZodType, description: string) =>
  ApiResponse({ status, description, content: { 'application/json': { schema: jsonSchema(schema) as object } } });

/**
 * The answers of a download (sendContent): the content with its stored Content-Type, whole (200)
 * or one range of it (206), never JSON.
 */
export const ApiDownload = () => {
  const header = (description: string) => ({ description, schema: { type: 'string' } });
  const headers = {
    'content-type': header('the Content-Type the content was uploaded with'),
    etag: header('`"<sha256>"` of the whole content'),
    'accept-ranges': header('`bytes`'),
    'content-disposition': header('`attachment`'),
    'cache-control': header('`no-store`'),
  };
  const bytes = { '*/*': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } as object } };
  return applyDecorators(
    ApiResponse({ status: 200, description: 'the whole content', content: bytes, headers }),
    ApiResponse({
      status: 206,
      description: 'one `Range: bytes=` range of the content',
      content: bytes,
      headers: { ...headers, 'content-range': header('`bytes <first>-<last>/<size>`') },
    }),
  );
};

/**
 * A 200 in JSON (`schema`), or, with `Accept: application/x-ndjson`, every match streamed as
 * one JSON object per line (`line`; OpenAPI 3.2's `itemSchema`, as an extension until 3.2).
 */
export const ApiJsonOrNdjson = (schema: z.ZodType, line: z.ZodType, description: string) =>
  ApiResponse({
    status: 200,
    description,
    content: {
      'application/json': { schema: jsonSchema(schema) as object },
      'application/x-ndjson': { schema: { type: 'string', contentMediaType: 'application/x-ndjson' } as object, 'x-itemSchema': jsonSchema(line) } as object,
    },
  });

/** A success answer without a body. */
export const ApiNoContent = (description: string) => ApiResponse({ status: 204, description });

/** Where completeDocument() finds a route's own error codes (see ApiErrors). */
const ERRORS_EXTENSION = 'x-coffer-errors';
/**
 * Who may call a route, in its operation (set by @coffer/auth's access decorators), with the
 * error codes its access check can answer; completeDocument() moves those to the responses.
 */
export const ACCESS_EXTENSION = 'x-coffer-access';
export interface RouteAccess {
  kind?: string;
  errors?: ErrorCode[];
  [detail: string]: unknown;
}
/**
 * A schema with this key documents a setting's value as its `maximum` (`x-coffer-max-setting`)
 * or `default` (`x-coffer-default-setting`): the bound the server enforces is the configured one.
 */
const MAX_SETTING = 'x-coffer-max-setting';
const DEFAULT_SETTING = 'x-coffer-default-setting';

/**
 * Documents the error codes a route can answer with, beyond those completeDocument() adds to
 * every route from what the route is (see routeErrorCodes). Standalone, without
 * completeDocument(), it still lists them with the common ones, grouped by status.
 */
export const ApiErrors = (...codes: ErrorCode[]) => {
  const byStatus = groupByStatus(['unauthenticated', 'validation_failed', 'invalid_path_parameter', 'kms_unavailable', 'database_busy', ...codes]);
  return applyDecorators(
    ApiExtension(ERRORS_EXTENSION, codes),
    ApiBearerAuth(),
    ...[...byStatus].map(([status, list]) => ApiResponse({ status, description: errorDescription(list), schema: { $ref: ERROR_REF } })),
  );
};

const ERROR_REF = '#/components/schemas/Error';

export const ERROR_SCHEMA = {
  type: 'object',
  required: ['error'],
  additionalProperties: false,
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message', 'requestId'],
      additionalProperties: false,
      properties: {
        code: { type: 'string', enum: Object.keys(ERROR_STATUS) },
        message: { type: 'string' },
        requestId: { type: 'string' },
        details: {},
      },
    },
  },
};

/**
 * Codes any request can get, whatever its route: refused at the edge (a URL Fastify cannot
 * decode, an overlong URL or parameter, headers too large, a body that arrives too slowly, is
 * too large, compressed or of a type the route does not take), while the server shuts down, or
 * failing unexpectedly.
 */
const EDGE_CODES: readonly ErrorCode[] = [
  'bad_request',
  'request_timeout',
  'payload_too_large',
  'uri_too_long',
  'unsupported_media_type',
  'unsupported_content_encoding',
  'header_too_large',
  'internal_error',
  'service_unavailable',
];

/**
 * Every error code of an operation: the route's own (ApiErrors), its access check's (the
 * access extension's `errors`), the edge's, and what follows from the route's inputs: a path
 * parameter may be refused (invalid_path_parameter), a JSON body may be malformed or invalid,
 * validated query parameters may be invalid.
 */
export function routeErrorCodes(operation: { parameters?: { in: string }[]; requestBody?: unknown; declared: readonly ErrorCode[] }): ErrorCode[] {
  const parameters = operation.parameters ?? [];
  const codes = new Set<ErrorCode>(EDGE_CODES);
  if (parameters.some((p) => p.in === 'path')) codes.add('invalid_path_parameter');
  if (parameters.some((p) => p.in === 'query')) codes.add('validation_failed');
  const body = operation.requestBody as { content?: Record<string, unknown> } | undefined;
  if (body?.content?.['application/json']) ['invalid_json', 'validation_failed'].forEach((c) => codes.add(c as ErrorCode));
  for (const code of operation.declared) codes.add(code);
  return [...codes];
}

export interface PathParameterDoc {
  description: string;
  schema: object;
  /** Checked by a ZodValidationPipe: a malformed value answers 400 validation_failed. */
  validated?: boolean;
}

export interface CompleteDocumentOptions {
  /** Settings a schema refers to by name (`x-coffer-max-setting`): the server's configuration. */
  settings?: Readonly<Record<string, unknown>>;
  /** How each path parameter is documented, by name; others are described as plain strings. */
  pathParameters?: Readonly<Record<string, PathParameterDoc>>;
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'] as const;

/**
 * Completes the document SwaggerModule generated from the controllers, in place, for routes
 * added later as for today's: OpenAPI 3.1 (the dialect of the zod-generated JSON Schemas);
 * every `{name}` of a path declared as a path parameter; security from the route's access
 * (public routes need no bearer token; the bearer is an opaque API key or platform token, no
 * JWT); every error code the route can answer (routeErrorCodes), each status's answer
 * restricted to its codes; settings-bound limits as configured.
 */
export function completeDocument(document: OpenAPIObject, options: CompleteDocumentOptions = {}): OpenAPIObject {
  const doc = document as unknown as Json & { paths: Record<string, Record<string, Json>>; components?: Json };
  doc.openapi = '3.1.0';
  const components = (doc.components ??= {}) as { schemas?: Json; securitySchemes?: Record<string, Json> };
  components.schemas = { ...components.schemas, Error: ERROR_SCHEMA };
  const bearer = Object.entries(components.securitySchemes ?? {}).find(([, s]) => s.type === 'http' && String(s.scheme).toLowerCase() === 'bearer');
  if (bearer) delete bearer[1].bearerFormat;

  for (const [path, item] of Object.entries(doc.paths)) {
    const names = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    for (const method of METHODS) {
      const operation = item[method] as (Json & { parameters?: Json[]; responses?: Record<string, Json> }) | undefined;
      if (!operation) continue;
      const { errors: accessErrors = [], ...access } = (operation[ACCESS_EXTENSION] as RouteAccess | undefined) ?? {};
      if (operation[ACCESS_EXTENSION]) operation[ACCESS_EXTENSION] = access;
      operation.security = access.kind === 'public' || !bearer ? [] : [{ [bearer[0]]: [] }];

      const parameters = (operation.parameters ??= []);
      for (const name of names) {
        let parameter = parameters.find((p) => p.in === 'path' && p.name === name);
        if (!parameter) parameters.push((parameter = { name, in: 'path' }));
        const known = options.pathParameters?.[name];
        parameter.required = true;
        parameter.description ??= known?.description ?? name;
        if (known || !parameter.schema) parameter.schema = known?.schema ?? { type: 'string' };
      }
      const position = (p: Json) => names.indexOf(String(p.name));
      operation.parameters = [...parameters.filter((p) => p.in === 'path').sort((a, b) => position(a) - position(b)), ...parameters.filter((p) => p.in !== 'path')];
      if (!operation.parameters.length) delete operation.parameters;
      const validated = names.some((name) => options.pathParameters?.[name]?.validated);

      const declared = (operation[ERRORS_EXTENSION] as ErrorCode[] | undefined) ?? [];
      delete operation[ERRORS_EXTENSION];
      const codes = routeErrorCodes({
        parameters: operation.parameters as { in: string }[] | undefined,
        requestBody: operation.requestBody,
        declared: [...accessErrors, ...(validated ? (['validation_failed'] as const) : []), ...declared],
      });
      operation.responses = errorResponses(operation.responses ?? {}, codes);
      applySettings(operation, options.settings ?? {});
      binaryAsContentMediaType(operation.requestBody);
    }
  }
  return document;
}

function groupByStatus(codes: readonly ErrorCode[]): Map<number, ErrorCode[]> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) byStatus.set(ERROR_STATUS[code], [...(byStatus.get(ERROR_STATUS[code]) ?? []), code]);
  return byStatus;
}

function errorDescription(codes: readonly string[]): string {
  return `error codes: ${[...new Set(codes)].join(', ')}`;
}

/** The Error schema with `code` one of `codes`: what this status of this route can answer. */
function errorSchema(codes: readonly ErrorCode[]): Json {
  return { allOf: [{ $ref: ERROR_REF }, { type: 'object', properties: { error: { type: 'object', properties: { code: { enum: codes } } } } }] };
}

/** Replaces the generic error answers (ApiErrors') by one per status with the route's codes. */
function errorResponses(responses: Record<string, Json>, codes: readonly ErrorCode[]): Record<string, Json> {
  const isGenericError = (response: Json) => {
    const schema = (response.content as Record<string, { schema?: Json }> | undefined)?.['application/json']?.schema;
    return schema?.$ref === ERROR_REF;
  };
  const result: Record<string, Json> = {};
  for (const [status, response] of Object.entries(responses)) if (!isGenericError(response)) result[status] = response;
  for (const [status, list] of groupByStatus(codes)) {
    const error: Json = { description: errorDescription(list), content: { 'application/json': { schema: errorSchema(list) } } };
    const other = result[String(status)];
    const otherSchema = (other?.content as Record<string, { schema?: Json }> | undefined)?.['application/json']?.schema;
    result[String(status)] = otherSchema
      ? { ...other, description: `${other.description}; or ${error.description}`, content: { 'application/json': { schema: { anyOf: [otherSchema, errorSchema(list)] } } } }
      : error;
  }
  return Object.fromEntries(Object.entries(result).sort(([a], [b]) => a.localeCompare(b)));
}

/** OpenAPI 3.0's `format: binary` is 3.1's `contentMediaType` (a body of bytes, not a JSON string). */
function binaryAsContentMediaType(body: unknown): void {
  for (const media of Object.values((body as { content?: Record<string, { schema?: Json }> } | undefined)?.content ?? {})) {
    if (media.schema?.type === 'string' && media.schema.format === 'binary') media.schema = { type: 'string', contentMediaType: 'application/octet-stream' };
  }
}

/** `x-coffer-max-setting: NAME` becomes `maximum: <NAME's value>` (and the same for defaults). */
function applySettings(node: unknown, settings: Readonly<Record<string, unknown>>): void {
  if (Array.isArray(node)) return node.forEach((child) => applySettings(child, settings));
  if (!node || typeof node !== 'object') return;
  const schema = node as Json;
  for (const [key, target] of [
    [MAX_SETTING, 'maximum'],
    [DEFAULT_SETTING, 'default'],
  ] as const) {
    const name = schema[key];
    if (typeof name !== 'string') continue;
    if (settings[name] !== undefined) {
      schema[target] = settings[name];
      delete schema[key];
    }
  }
  for (const child of Object.values(schema)) applySettings(child, settings);
}
