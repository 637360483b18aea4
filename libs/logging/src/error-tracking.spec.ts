import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as Sentry from '@sentry/node';
import { captureError, initErrorTracking, redactSecrets, scrubEvent } from './error-tracking';

const TOKEN = `coffer_key.0123456789abcdef.fedcba9876543210.${'Ab1_'.repeat(10)}xyz`;
const PAT = `coffer_pat.0123456789abcdef.${'Zz9-'.repeat(10)}abc`;
const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ';
const MASTER_KEY = 'q83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng=';
const HASH = 'a3f1c9e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a6c8e0b2d4f6a8';
const SECRETS = [TOKEN, TOKEN.split('.').pop()!, PAT, 'Zz9-Zz9-', JWT, MASTER_KEY, HASH, 'dana.secret@example.org', 'hunter2', 'redis-pw', 's3cr3t-query', 'body-marker-7f3a'];

/** An event as an SDK with every integration on could build it, with secrets in every field. */
function craftedEvent(): Sentry.ErrorEvent {
  return {
    type: undefined,
    event_id: 'e1',
    level: 'error',
    platform: 'node',
    release: 'coffer@1.2.3',
    environment: 'production',
    server_name: 'host.dana.secret@example.org',
    message: `failed for ${TOKEN}`,
    transaction: `GET /api/v1/orgs/acme/users?token=s3cr3t-query`,
    tags: { service: 'api', request_id: '0b6f4c3e-8d9a-4c1e-9f0b-2b7f5e6a1c3d', route: '/api/v1/organizations/:org/users', method: 'GET', email: 'dana.secret@example.org' },
    request: {
      url: 'https://coffer.example/api/v1/links/' + JWT + '?token=s3cr3t-query',
      method: 'POST',
      headers: { authorization: `Bearer ${PAT}`, cookie: 'sid=hunter2', 'x-api-key': TOKEN },
      cookies: { sid: 'hunter2' },
      query_string: 'token=s3cr3t-query',
      data: '{"note":"body-marker-7f3a"}',
    },
    user: { email: 'dana.secret@example.org', ip_address: '10.0.0.7' },
    extra: { body: 'body-marker-7f3a', key: MASTER_KEY },
    contexts: {
      runtime: { name: 'node', version: 'v24.11.0' },
      app: { config: `postgres://coffer_app:hunter2@db:5432/coffer redis://:redis-pw@redis:6379` },
    },
    breadcrumbs: [{ category: 'http', message: `GET https://s3.example/bucket?X-Amz-Signature=${HASH}`, data: { authorization: `Bearer ${PAT}` } }],
    modules: { pg: '8.23.1' },
    exception: {
      values: [
        {
          type: 'Error',
          value: `connect to postgres://coffer_app:hunter2@db:5432/coffer failed for dana.secret@example.org with Bearer ${PAT}, key ${MASTER_KEY}, hash ${HASH}, link ${JWT}`,
          mechanism: { type: 'generic', handled: true, data: { body: 'body-marker-7f3a' } },
          stacktrace: {
            frames: [
              {
                filename: '/app/dist/libs/users/src/users.service.js',
                function: 'UsersService.create',
                lineno: 42,
                colno: 7,
                in_app: true,
                vars: { email: 'dana.secret@example.org', token: TOKEN },
                context_line: `const token = '${TOKEN}';`,
                pre_context: ['body-marker-7f3a'],
              },
            ],
          },
        },
      ],
    },
  };
}

test('a crafted event keeps the error type, frames, request id, route, service, release and environment, and none of its secrets', () => {
  const sent = scrubEvent(craftedEvent());
  const json = JSON.stringify(sent);
  for (const secret of SECRETS) assert.ok(!json.includes(secret), `the event still holds ${secret.slice(0, 16)}…: ${json}`);
  for (const field of ['request', 'user', 'extra', 'breadcrumbs', 'server_name', 'modules']) assert.equal(field in sent, false, field);
  assert.deepEqual(sent.contexts, { runtime: { name: 'node', version: 'v24.11.0' } });
  assert.deepEqual(sent.tags, { service: 'api', request_id: '0b6f4c3e-8d9a-4c1e-9f0b-2b7f5e6a1c3d', route: '/api/v1/organizations/:org/users', method: 'GET' });
  assert.equal(sent.transaction, 'GET /api/v1/organizations/:org/users', 'the route template, not the raw URL');
  assert.equal(sent.release, 'coffer@1.2.3');
  assert.equal(sent.environment, 'production');
  const [exception] = sent.exception!.values!;
  assert.equal(exception.type, 'Error');
  assert.deepEqual(exception.mechanism, { type: 'generic', handled: true });
  assert.deepEqual(exception.stacktrace!.frames, [
    { filename: '/app/dist/libs/users/src/users.service.js', abs_path: undefined, module: undefined, function: 'UsersService.create', lineno: 42, colno: 7, in_app: true },
  ]);
  assert.equal(
    exception.value,
    'connect to postgres://[redacted]@db:5432/coffer failed for [redacted-email] with Bearer [redacted], key [redacted], hash [redacted], link [redacted-jwt]',
  );
  assert.equal(sent.message, 'failed for coffer_key.[redacted]');
});

test('redaction keeps what identifies without revealing: request ids, Coffer ids, paths, SQL states', () => {
  const text = 'request 0b6f4c3e-8d9a-4c1e-9f0b-2b7f5e6a1c3d org 0123456789abcdef at /var/lib/coffer/storage/objects/packages (42501)';
  assert.equal(redactSecrets(text), text);
  assert.equal(redactSecrets(`GET https://s3.example/b/o?X-Amz-Credential=AKIA&sig=abc then ${PAT}`), 'GET https://s3.example/b/o?[redacted] then coffer_pat.[redacted]');
});

test('without SENTRY_DSN the SDK is not started and captureError sends nothing', () => {
  initErrorTracking({ COFFER_ENV: 'test', SENTRY_DSN: undefined, SENTRY_ENVIRONMENT: undefined }, 'api');
  assert.equal(Sentry.isInitialized(), false);
  assert.equal(Sentry.getClient(), undefined);
  captureError(new Error('nothing to send'));
  assert.equal(Sentry.lastEventId(), undefined);
});
