import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { registeredRoutes } from '@coffer/http';
import { OrgProvisioner } from '@coffer/orgs';
import { bearer, type OrgClient } from '../support/client';
import { TestWorld } from '../support/world';

// The audit chains' public keys are public by design (offline verification); they need a chain.
const PUBLIC_ROUTES = new Map([
  ['/health/live', ''],
  ['/health/ready', ''],
  ['/api/v1/openapi.json', ''],
  ['/api/v1/audit/keys', '?chain=control'],
]);

/** Routes of the platform admin alone that name an org: a creation's progress. */
const PLATFORM_ORG_ROUTES = new Set(['/api/v1/organizations/:org/status']);

describe('API over HTTP (Fastify, PostgreSQL, Redis)', () => {
  let world: TestWorld;
  let a: OrgClient;
  let b: OrgClient;
  let routes: { method: string; url: string }[];

  before(async () => {
    world = await TestWorld.start({ orgs: ['org-a', 'org-b'] });
    [a, b] = [world.org('org-a'), world.org('org-b')];
    const fastify = world.app.getHttpAdapter().getInstance() as FastifyInstance;
    routes = registeredRoutes(fastify).filter((r) => r.method !== 'HEAD' && r.method !== 'OPTIONS');
  });

  after(() => world?.stop());
  const fill = (url: string, params: Record<string, string>) =>
    url.replace(/:([A-Za-z]+)/g, (_, name: string) => params[name] ?? 'x');

  test('health: live and ready answer 200 with PostgreSQL, Redis and the KMS up', async () => {
    const live = await world.http().get('/health/live');
    assert.equal(live.status, 200);
    const ready = await world.http().get('/health/ready');
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body, { status: 'ok', checks: { postgres: 'ok', redis: 'ok', kms: 'ok' } });
  });

  test('creating an organization returns it with its first admin and a key shown once', async () => {
    const res = await world.api
      .post('organizations')
      .send({ slug: 'acme-shape', name: 'Acme', admin: { email: 'Root@Acme.example', displayName: 'Root' } });
    assert.equal(res.status, 201);
    assert.deepEqual(Object.keys(res.body).sort(), ['admin', 'organization']);
    assert.equal(res.body.organization.slug, 'acme-shape');
    assert.equal(res.body.organization.status, 'active');
    assert.equal(res.body.admin.user.email, 'root@acme.example');
    assert.equal(res.body.admin.user.role, 'admin');
    assert.match(res.body.admin.apiKey.secret, /^coffer_key\./);
    assert.ok(res.body.admin.apiKey.id);

    const token = res.body.admin.apiKey.secret;
    const shape = world.api.org('acme-shape').as(token);
    const org = await shape.get();
    assert.equal(org.status, 200);
    assert.equal(org.body.organization.id, res.body.organization.id);
    const keys = await shape.get('api-keys');
    assert.equal(keys.status, 200);
    assert.equal(keys.body.apiKeys.length, 1);
    assert.ok(!JSON.stringify(keys.body).includes(token.split('.').pop()), 'the secret is never listed');
    const list = await world.api.get('organizations');
    assert.ok(list.body.organizations.some((o: { slug: string }) => o.slug === 'acme-shape'));
  });

  test('creating an existing slug answers 409 organization_exists', async () => {
    const res = await world.api.post('organizations').send({ slug: a.slug, name: 'Again' });
    assert.equal(res.status, 409);
    assert.equal(res.body.error.code, 'organization_exists');
  });

  test('creating an org again completes one left in provisioning by a crash', async () => {
    const { org } = await world.provisioner.get(OrgProvisioner).register('stuck', 'Stuck');
    assert.equal(org.status, 'provisioning');
    const hidden = await world.api.org('stuck').get();
    assert.equal(hidden.status, 404, 'an org still provisioning is not reachable');
    const res = await world.api
      .post('organizations')
      .send({ slug: 'stuck', name: 'Stuck', admin: { email: 'a@stuck.example', displayName: 'A' } });
    assert.equal(res.status, 201);
    assert.equal(res.body.organization.id, org.id);
    const users = await world.api.org('stuck').as(res.body.admin.apiKey.secret).get('users');
    assert.equal(users.status, 200);
  });

  test('a key of org A gets 404 on every org-B route (routes enumerated from the router)', async () => {
    // Platform-admin routes that name an org answer 403 to every org key, its own org's too: they
    // tell nothing of B either.
    const platformOnly = routes.filter((r) => PLATFORM_ORG_ROUTES.has(r.url));
    assert.equal(platformOnly.length, PLATFORM_ORG_ROUTES.size);
    for (const route of platformOnly) {
      for (const org of [a, b]) {
        const res = await world.http()[route.method.toLowerCase() as 'get'](fill(route.url, { org: org.slug })).set(bearer(a));
        assert.deepEqual([res.status, res.body.error.code], [403, 'forbidden'], `${route.method} ${route.url} for ${org.slug}`);
      }
    }
    const orgRoutes = routes.filter((r) => r.url.includes(':org') && !PLATFORM_ORG_ROUTES.has(r.url));
    assert.ok(orgRoutes.length >= 8, `expected the org routes, found ${orgRoutes.length}`);
    const params = { org: b.slug, userId: b.adminUserId, keyId: b.adminKeyId, name: 'handbook', version: '1' };
    for (const route of orgRoutes) {
      const res = await world.http()[route.method.toLowerCase() as 'get'](fill(route.url, params)).set(bearer(a)).send({});
      assert.equal(res.status, 404, `${route.method} ${route.url} answered ${res.status}`);
      assert.equal(res.body.error.code, 'organization_not_found', `${route.method} ${route.url}`);
    }
    // The same reads with B's own key get past the org check (an unset resource may be a 404 of
    // its own), so the 404s above came from the org check.
    for (const route of orgRoutes.filter((r) => r.method === 'GET')) {
      const res = await world.http().get(fill(route.url, params)).set(bearer(b));
      const passed = res.status === 200 || (res.status === 404 && res.body.error.code !== 'organization_not_found');
      assert.ok(passed, `${route.url} with B's own key: ${res.status} ${res.body.error?.code}`);
    }
    // And an org that does not exist looks exactly like another org's.
    const missing = await world.api.org('no-such-org').as(a).get();
    assert.deepEqual([missing.status, missing.body.error.code], [404, 'organization_not_found']);
  });

  test('every route but health, the OpenAPI document, the audit public keys and signed asset links requires a bearer token', async () => {
    assert.ok(routes.length >= 10);
    for (const route of routes) {
      const path = fill(route.url, { org: a.slug, userId: a.adminUserId, keyId: a.adminKeyId, name: 'handbook', version: '1' });
      const res = await world.http()[route.method.toLowerCase() as 'get'](path + (PUBLIC_ROUTES.get(route.url) ?? '')).send({});
      if (PUBLIC_ROUTES.has(route.url)) {
        assert.equal(res.status, 200, `${route.url} is public`);
      } else {
        assert.equal(res.status, 401, `${route.method} ${route.url} without a token`);
        // A signed link's token is its credential (test/e2e/asset-links.e2e.spec.ts).
        assert.equal(res.body.error.code, route.url === '/api/v1/assets/:token' ? 'invalid_link' : 'unauthenticated');
      }
    }
    const forged = await a.as(`${a.adminToken.slice(0, -2)}xx`).get();
    assert.equal(forged.status, 401);
  });

  test('revoked and expired keys, and keys of disabled users, get 401', async () => {
    const member = await world.addUser(a, 'member');
    assert.equal((await a.as(member).get()).status, 200);

    const revoke = await a.delete(`api-keys/${member.keyId}`);
    assert.equal(revoke.status, 200);
    assert.equal(revoke.body.apiKey.status, 'revoked');
    const revoked = await a.as(member).get();
    assert.deepEqual([revoked.status, revoked.body.error.code], [401, 'unauthenticated']);

    const expiresAt = new Date(Date.now() + 1500).toISOString();
    const shortLived = await a.post(`users/${member.userId}/api-keys`).send({ name: 'short', expiresAt });
    assert.equal(shortLived.status, 201);
    assert.equal((await a.as(shortLived.body.apiKey.secret).get()).status, 200);
    await new Promise((resolve) => setTimeout(resolve, Date.parse(expiresAt) - Date.now() + 100));
    assert.equal((await a.as(shortLived.body.apiKey.secret).get()).status, 401);

    const other = await world.addUser(a, 'security_officer');
    const disable = await a.post(`users/${other.userId}/disable`);
    assert.equal(disable.status, 200);
    assert.equal(disable.body.user.disabled, true);
    assert.equal((await a.as(other).get()).status, 401);
  });

  test('a member gets 403 on admin routes; a security officer reads but cannot change', async () => {
    const member = await world.addUser(a, 'member');
    const officer = await world.addUser(a, 'security_officer');
    const adminOnly: ['post' | 'delete', string, object?][] = [
      ['post', 'users', { email: 'x@y.example', displayName: 'X', role: 'member' }],
      ['post', `users/${a.adminUserId}/disable`],
      ['post', `users/${a.adminUserId}/api-keys`, { name: 'stolen' }],
      ['post', `users/${a.adminUserId}/enable`],
    ];
    const readers = ['users', `users/${a.adminUserId}`];
    for (const [method, path, body] of adminOnly) {
      for (const who of [member, officer]) {
        const res = await a.as(who)[method](path).send(body ?? {});
        assert.deepEqual([res.status, res.body.error?.code], [403, 'forbidden'], `${method} ${path}`);
      }
    }
    for (const path of readers) {
      const res = await a.as(member).get(path);
      assert.deepEqual([res.status, res.body.error?.code], [403, 'forbidden'], `get ${path} as member`);
      assert.equal((await a.as(officer).get(path)).status, 200, `${path} as officer`);
    }
    assert.equal((await world.api.as(member).get('organizations')).status, 403);
    assert.equal((await world.api.as(a).post('organizations').send({ slug: 'x', name: 'x' })).status, 403);
    // Anyone may issue a key to themselves.
    const own = await a.as(member).post(`users/${member.userId}/api-keys`).send({ name: 'mine' });
    assert.equal(own.status, 201);
  });

  test('members list and revoke their own keys only; one key shape with its secret at issuance and org creation', async () => {
    const member = await world.addUser(a, 'member');
    const issued = await a.as(member).post(`users/${member.userId}/api-keys`).send({ name: 'second' });
    assert.deepEqual([issued.status, typeof issued.body.apiKey.secret, issued.body.secret], [201, 'string', undefined]);
    const listed = await a.as(member).get('api-keys');
    assert.equal(listed.status, 200);
    assert.deepEqual(new Set(listed.body.apiKeys.map((k: { userId: string }) => k.userId)), new Set([member.userId]));
    assert.deepEqual(listed.body.apiKeys.map((k: { id: string }) => k.id).sort(), [member.keyId, issued.body.apiKey.id].sort());
    assert.ok(listed.body.apiKeys.every((k: object) => !('secret' in k)), 'never a secret in a listing');
    const others = await a.as(member).delete(`api-keys/${a.adminKeyId}`);
    assert.deepEqual([others.status, others.body.error.code], [404, 'api_key_not_found']);
    assert.equal((await a.get()).status, 200, "the admin's key still works");
    const own = await a.as(member).delete(`api-keys/${issued.body.apiKey.id}`);
    assert.deepEqual([own.status, own.body.apiKey.status], [200, 'revoked']);
    assert.equal((await a.as(issued.body.apiKey.secret).get()).status, 401);
    assert.ok((await a.get('api-keys')).body.apiKeys.length > listed.body.apiKeys.length, 'an admin lists every key');
  });

  test("a disabled user's keys are listed as user_disabled and work again once re-enabled; the last active admin cannot be disabled", async () => {
    const member = await world.addUser(a, 'member');
    assert.equal((await a.post(`users/${member.userId}/disable`)).status, 200);
    const statusOf = async () => (await a.get('api-keys')).body.apiKeys.find((k: { id: string }) => k.id === member.keyId).status;
    assert.equal(await statusOf(), 'user_disabled');
    assert.equal((await a.as(member).get()).status, 401);
    const enabled = await a.post(`users/${member.userId}/enable`);
    assert.deepEqual([enabled.status, enabled.body.user.disabled], [200, false]);
    assert.equal(await statusOf(), 'active');
    assert.equal((await a.as(member).get()).status, 200);

    const solo = await world.createOrg();
    const alone = await solo.post(`users/${solo.adminUserId}/disable`);
    assert.deepEqual([alone.status, alone.body.error.code], [409, 'last_admin']);
    const second = await world.addUser(solo, 'admin');
    assert.equal((await solo.post(`users/${solo.adminUserId}/disable`)).status, 200, 'another admin remains');
    const last = await solo.as(second).post(`users/${second.userId}/disable`);
    assert.deepEqual([last.status, last.body.error.code], [409, 'last_admin']);
    assert.equal((await solo.as(second).get('users')).status, 200, 'the org still has its admin');
  });

  test('bad JSON, unknown fields, wrong types and oversized bodies get 400/413/415 and write nothing', async () => {
    const count = async () => (await a.get('users')).body.users.length;
    const before = await count();

    const badJson = await a.post('users').set('content-type', 'application/json').send('{"email": "x@');
    assert.deepEqual([badJson.status, badJson.body.error.code], [400, 'invalid_json']);

    const unknown = await a
      .post('users')
      .send({ email: 'u@a.example', displayName: 'U', role: 'member', isRoot: true });
    assert.deepEqual([unknown.status, unknown.body.error.code], [400, 'validation_failed']);
    assert.match(JSON.stringify(unknown.body.error.details), /unknown field\(s\): isRoot/);

    const wrong = await a.post('users').send({ email: 'not-an-email', displayName: '', role: 'god' });
    assert.deepEqual([wrong.status, wrong.body.error.code], [400, 'validation_failed']);
    assert.deepEqual(wrong.body.error.details.map((d: { path: string }) => d.path).sort(), ['displayName', 'email', 'role']);
    assert.ok(!JSON.stringify(wrong.body).includes('not-an-email'), 'submitted values are not echoed');

    const huge = await a
      .post('users')
      .send({ email: 'big@a.example', displayName: 'x'.repeat(1024 * 1024 + 1), role: 'member' });
    assert.deepEqual([huge.status, huge.body.error.code], [413, 'payload_too_large']);

    const text = await a.post('users').set('content-type', 'text/plain').send('hello');
    assert.deepEqual([text.status, text.body.error.code], [415, 'unsupported_media_type']);

    const pastExpiry = await a
      .post(`users/${a.adminUserId}/api-keys`)
      .send({ name: 'old', expiresAt: '2001-01-01T00:00:00Z' });
    assert.deepEqual([pastExpiry.status, pastExpiry.body.error.code], [400, 'validation_failed']);

    assert.equal(await count(), before, 'no user was written');
  });

  test('a duplicate email answers 409 user_email_taken, case-insensitively', async () => {
    const first = await a.post('users').send({ email: 'dup@a.example', displayName: 'D', role: 'member' });
    assert.equal(first.status, 201);
    const again = await a.post('users').send({ email: ' DUP@a.example ', displayName: 'D', role: 'member' });
    assert.deepEqual([again.status, again.body.error.code], [409, 'user_email_taken']);
  });

  test('errors have one shape and carry the request id of their response', async () => {
    const res = await world.http().get('/api/v1/nowhere');
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, 'route_not_found');
    assert.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/);
    assert.equal(res.body.error.requestId, res.headers['x-request-id']);
    const unknownUser = await a.get('users/0000000000000000');
    assert.deepEqual([unknownUser.status, unknownUser.body.error.code], [404, 'user_not_found']);
    const spoofed = await world.http().get('/health/live').set('x-request-id', 'chosen-by-client');
    assert.notEqual(spoofed.headers['x-request-id'], 'chosen-by-client');
  });

  test('the OpenAPI document is generated from the routes and lists the error codes', async () => {
    const res = await world.http().get('/api/v1/openapi.json');
    assert.equal(res.status, 200);
    const documented = Object.entries(res.body.paths as Record<string, object>).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
    );
    for (const route of routes.filter((r) => r.url.startsWith('/api/v1/') && r.url !== '/api/v1/openapi.json')) {
      assert.ok(documented.includes(`${route.method} ${route.url}`), `${route.method} ${route.url} is documented`);
    }
    assert.ok(res.body.components.schemas.Error.properties.error.properties.code.enum.includes('organization_not_found'));
    assert.ok(res.body.components.schemas.Error.properties.error.properties.code.enum.includes('database_busy'));
    const create = res.body.paths['/api/v1/organizations'].post;
    assert.deepEqual(create.requestBody.content['application/json'].schema.required.sort(), ['name', 'slug']);
  });
});
