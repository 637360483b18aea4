import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpException } from '@nestjs/common';
import { AppError, ERROR_STATUS, toErrorResponse } from './errors';
import { canonicalPositiveInteger, controlCharacterInParams, escapeControlCharacters, findNul, MediaType, sanitizedParams } from './request-checks';
import { ZodValidationPipe } from './zod-validation.pipe';

test('control characters in path parameters are found and escaped, never kept raw', () => {
  for (const c of ['\u0000', '\u0001', '\n', '\u001f', '\u007f', '\u0085', '\u009f']) {
    assert.ok(controlCharacterInParams({ org: 'acme', id: `a${c}b` }), JSON.stringify(c));
  }
  assert.ok(!controlCharacterInParams({ org: 'acme', id: 'ünïcødé-ok_1.2', name: '\u00a0' }));
  assert.equal(escapeControlCharacters('a\u0000b\nc'), 'a\\u0000b\\u000ac');
  assert.deepEqual(sanitizedParams({ org: 'x\u0000', id: 'ok' }), { org: 'x\\u0000', id: 'ok' });
  assert.ok(!/[\u0000-\u001f]/.test(JSON.stringify(sanitizedParams({ ['k\u0001']: 'v\u0002' })).replace(/\\u00[0-9a-f]{2}/g, '')));
});

test('NUL is found in any string or key of a JSON value, however deep', () => {
  assert.equal(findNul({ name: 'ok', admin: { displayName: 'a\u0000b' } }), 'admin.displayName');
  assert.equal(findNul({ list: ['x', 'y\u0000'] }), 'list.1');
  assert.equal(findNul({ ['k\u0000']: 1 }), 'k\\u0000');
  assert.equal(findNul({ a: 'fine', b: [1, true, null, { c: 'also fine\u0001' }] }), undefined);
  let deep: unknown = 'x\u0000';
  for (let i = 0; i < 100_000; i++) deep = [deep];
  assert.equal(findNul(deep)?.split('.').length, 100_000, 'iterative: no stack overflow');
});

test('the validation pipe refuses NUL anywhere (400 validation_failed) and a missing body where one is taken (400 invalid_json)', async () => {
  const { z } = await import('zod');
  const pipe = new ZodValidationPipe(z.object({ name: z.string().optional() }).strict());
  assert.throws(() => pipe.transform({ name: 'a\u0000b' }, { type: 'body' }), (e: AppError) => e.code === 'validation_failed');
  assert.throws(() => pipe.transform({ name: 'a\u0000b' }, { type: 'query' }), (e: AppError) => e.code === 'validation_failed');
  assert.throws(() => pipe.transform(undefined, { type: 'body' }), (e: AppError) => e.code === 'invalid_json');
  assert.deepEqual(pipe.transform({}, { type: 'body' }), {});
  assert.deepEqual(pipe.transform(undefined, { type: 'query' }), {});
});

test('a media type is type/subtype with RFC 9110 parameters, at most 255 characters', () => {
  for (const ok of ['application/pdf', 'text/plain; charset=utf-8', 'text/plain;charset="utf-8"', 'application/vnd.coffer+json; a=b ;c="d\\"e"', 'x/y;']) {
    assert.ok(MediaType.safeParse(ok).success, ok);
  }
  for (const bad of ['', 'pdf', 'text/', '/plain', 'text/plain/x', 'text plain', 'a/b; c', 'a/b; c="unterminated', 'a/b\u0000', 'tëxt/plain', 'a/b; c=d e', `a/${'b'.repeat(254)}`]) {
    assert.ok(!MediaType.safeParse(bad).success, JSON.stringify(bad));
  }
  assert.ok(MediaType.safeParse(`a/${'b'.repeat(253)}`).success, '255 characters');
});

test('version numbers: canonical decimal integers only', () => {
  const version = canonicalPositiveInteger();
  for (const [text, value] of [['1', 1], ['2', 2], ['10', 10], ['2147483647', 2147483647]] as const) {
    assert.equal(version.parse(text), value);
  }
  for (const bad of ['0', '02', '1e0', '0x2', ' 2', '2 ', '+2', '-1', '2.0', '1_0', '', '2147483648', '99999999999999999999', '١']) {
    assert.ok(!version.safeParse(bad).success, JSON.stringify(bad));
  }
});

test('errors from below Nest get a stable code, their status kept, and a fixed message (no framework code, no echoed input)', () => {
  const fastify = (statusCode: number, code: string, message: string) => Object.assign(new Error(message), { statusCode, code });
  const cases: [unknown, number, string][] = [
    [fastify(415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', 'Unsupported Media Type: text/evil<script>'), 415, 'unsupported_media_type'],
    [fastify(414, 'FST_ERR_MAX_PARAM_LENGTH', "'/api/v1/xxxxxxxx' is exceeding the max param length"), 414, 'uri_too_long'],
    [fastify(431, 'X', 'header overflow'), 431, 'header_too_large'],
    [fastify(400, 'FST_ERR_CTP_INVALID_CONTENT_LENGTH', 'Request body size did not match Content-Length'), 400, 'bad_request'],
    [fastify(418, 'FST_ERR_WHATEVER', 'teapot /secret/path'), 400, 'bad_request'],
    [new HttpException('Cannot GET /api/v1/secret?token=abc', 404), 404, 'route_not_found'],
    [new Error('boom'), 500, 'internal_error'],
    [fastify(409, 'NoSuchBucketPolicy', 'boom from a dependency'), 500, 'internal_error'],
  ];
  for (const [error, status, code] of cases) {
    const { status: got, body } = toErrorResponse(error, 'rid');
    assert.deepEqual([got, body.error.code], [status, code]);
    assert.equal(ERROR_STATUS[code as keyof typeof ERROR_STATUS], status);
    assert.doesNotMatch(JSON.stringify(body), /FST_|evil|xxxx|secret|teapot|Content-Length|boom/);
  }
  const closed = toErrorResponse(new AppError('client_closed_request', 'gone'), 'rid');
  assert.deepEqual([closed.status, closed.body.error.code], [499, 'client_closed_request']);
});
