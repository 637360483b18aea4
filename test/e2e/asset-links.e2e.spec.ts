import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { KMS, KmsProvider, orgKeyName } from '@coffer/kms';
import type { OrgClient } from '../support/client';
import { rawGet, rawPut } from '../support/raw-http';
import { connect } from '../support/test-env';
import { TestWorld } from '../support/world';

describe('signed asset links (JWT signed with an org-scoped key)', () => {
  let world: TestWorld;
  let orgA: OrgClient;
  let orgB: OrgClient;
  const content = randomBytes(5000);

  before(async () => {
    world = await TestWorld.start({ config: { PACKAGE_LINK_MAX_TTL_SECONDS: '3600' }, orgs: ['org-a', 'org-b'] });
    [orgA, orgB] = [world.org('org-a'), world.org('org-b')];
    for (const org of [orgA, orgB]) {
      const res = await rawPut(org.url('packages/brochure'), org.headers(), content);
      assert.equal(res.status, 201);
    }
  });

  after(() => world?.stop());

  const link = (org: OrgClient, body: object = {}, token = org.adminToken, version = 1) =>
    org.as(token).post(`packages/brochure/versions/${version}/links`).send(body);
  const fetchAsset = (url: string, headers: Record<string, string> = {}) => rawGet(`${world.url}${url}`, headers);
  const errorCode = (res: { body: Buffer }) => JSON.parse(res.body.toString()).error.code;

  /** The token with one claim changed, signature kept. */
  function withClaim(url: string, claim: string, value: unknown): string {
    const [header, payload, signature] = url.slice('/api/v1/assets/'.length).split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    claims[claim] = value;
    return `/api/v1/assets/${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
  }

  test("a link dies with its creator's access (user disabled, key revoked), and can be revoked by itself", async () => {
    const member = await world.addUser(orgA, 'member');
    const [byMember, other] = [await link(orgA, {}, member.token), await link(orgA)];
    assert.equal((await fetchAsset(byMember.body.url)).status, 200);
    assert.equal((await orgA.post(`users/${member.userId}/disable`)).status, 200);
    const disabled = await fetchAsset(byMember.body.url);
    assert.deepEqual([disabled.status, errorCode(disabled)], [403, 'link_revoked']);
    assert.equal((await orgA.post(`users/${member.userId}/enable`)).status, 200);
    assert.equal((await fetchAsset(byMember.body.url)).status, 200, 'back with their access');
    assert.equal((await orgA.delete(`api-keys/${member.keyId}`)).status, 200);
    assert.equal((await fetchAsset(byMember.body.url)).status, 403, 'the key it was made with is revoked');

    const revoked = await orgA.post(`asset-links/${other.body.id}/revoke`);
    assert.deepEqual([revoked.status, revoked.body.revoked], [200, other.body.id]);
    const gone = await fetchAsset(other.body.url);
    assert.deepEqual([gone.status, errorCode(gone)], [403, 'link_revoked']);
    const fresh = await link(orgA);
    assert.equal((await fetchAsset(fresh.body.url)).status, 200, 'only that link: the others still work');
    const [entry] = (await orgA.get('audit-logs?action=asset_link.revoked')).body.entries;
    assert.equal(entry.target.linkId, other.body.id);
  });

  test('a link streams the content without an API key (Range too), lives 15 minutes by default, and is audited', async () => {
    const created = await link(orgA);
    assert.equal(created.status, 201);
    assert.match(created.body.url, /^\/api\/v1\/assets\/[\w-]+\.[\w-]+\.[\w-]+$/);
    const ttl = new Date(created.body.expiresAt).getTime() - Date.now();
    assert.ok(ttl > 14 * 60_000 && ttl <= 15 * 60_000, `expires in ${ttl} ms`);

    const res = await fetchAsset(created.body.url);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, content);
    const part = await fetchAsset(created.body.url, { range: 'bytes=100-199' });
    assert.equal(part.status, 206);
    assert.deepEqual(part.body, content.subarray(100, 200));

    const logs = await orgA.get('audit-logs?action=package.content_read');
    const entries = logs.body.entries.filter((e: { body?: { via?: { assetLink?: string } } }) => e.body?.via?.assetLink === created.body.id);
    assert.equal(entries.length, 2);
    assert.equal(entries[0].actor.kind, 'anonymous');
    assert.ok(!JSON.stringify(logs.body).includes(created.body.url.split('.')[2]), 'the token is not in the audit log');
  });

  test('a tampered token (claims or signature) is 401 invalid_link with no content', async () => {
    const { url } = (await link(orgA)).body;
    for (const forged of [
      withClaim(url, 'ver', 2),
      withClaim(url, 'exp', Math.floor(Date.now() / 1000) + 86_400 * 365),
      withClaim(url, 'pkg', 'other'),
      `${url.slice(0, -3)}${url.endsWith('AAA') ? 'BBB' : 'AAA'}`,
      '/api/v1/assets/not-a-token',
      '/api/v1/assets/a.b.c.d',
    ]) {
      const res = await fetchAsset(forged);
      assert.equal(res.status, 401, forged);
      assert.equal(errorCode(res), 'invalid_link');
    }
  });

  test("another org's token does not open this org's content, and org A's key cannot unwrap org B's link key", async () => {
    const { url } = (await link(orgA)).body;
    const moved = await fetchAsset(withClaim(url, 'org', orgB.id));
    assert.equal(moved.status, 401);
    assert.equal(errorCode(moved), 'invalid_link');
    assert.equal((await link(orgB)).status, 201);
    const owner = await connect(world.config.DATABASE_OWNER_URL, `${world.config.ORG_DATABASE_PREFIX}${orgB.id}`);
    try {
      const { rows } = await owner.query('SELECT wrapped_key FROM link_keys');
      assert.equal(rows.length, 1);
      await assert.rejects(world.app.get<KmsProvider>(KMS).unwrap(orgKeyName(orgA.id), rows[0].wrapped_key));
    } finally {
      await owner.end();
    }
  });

  test('an expired link is 401 link_expired; a lifetime over the maximum is refused', async () => {
    const { url } = (await link(orgA, { ttlSeconds: 1 })).body;
    await new Promise((r) => setTimeout(r, 2100));
    const res = await fetchAsset(url);
    assert.equal(res.status, 401);
    assert.equal(errorCode(res), 'link_expired');
    const tooLong = await link(orgA, { ttlSeconds: 3601 });
    assert.equal(tooLong.status, 400);
  });

  test('a link to a deleted version is 404', async () => {
    assert.equal((await rawPut(orgA.url('packages/brochure'), orgA.headers(), randomBytes(10))).status, 201);
    const { url } = (await link(orgA, {}, orgA.adminToken, 2)).body;
    assert.equal((await fetchAsset(url)).status, 200);
    assert.equal((await orgA.delete('packages/brochure/versions/2')).status, 200);
    const res = await fetchAsset(url);
    assert.equal(res.status, 404);
    assert.equal(errorCode(res), 'package_version_not_found');
  });

  test("an admin revokes all of the org's links (403 link_revoked); new links work; members cannot revoke", async () => {
    const member = await world.addUser(orgA, 'member');
    const fromMember = await link(orgA, {}, member.token);
    assert.equal(fromMember.status, 201);
    const fromAdmin = (await link(orgA)).body.url;
    const otherOrg = (await link(orgB)).body.url;
    assert.equal((await orgA.as(member).post('asset-links/revoke')).status, 403);
    const revoked = await orgA.post('asset-links/revoke');
    assert.equal(revoked.status, 200);
    assert.equal(revoked.body.revokedKeys, 1);
    for (const url of [fromMember.body.url, fromAdmin]) {
      const res = await fetchAsset(url);
      assert.equal(res.status, 403);
      assert.equal(errorCode(res), 'link_revoked');
    }
    assert.equal((await fetchAsset(otherOrg)).status, 200, "another org's links are untouched");
    const fresh = (await link(orgA)).body.url;
    assert.deepEqual((await fetchAsset(fresh)).body, content);
  });
});
