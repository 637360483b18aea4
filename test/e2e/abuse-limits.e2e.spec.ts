import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { formatOrgKey, generateSecret, randomId } from '@coffer/crypto';
import type { ApiClient, OrgClient } from '../support/client';
import { rawGet, rawPut } from '../support/raw-http';
import { TestWorld } from '../support/world';

type Entry = { target: Record<string, string> | null; clientIp: string | null; actor: { kind: string }; body: { error?: { code: string; status: number } } };

/** Failure entries refused with `code`, from `client`'s `path`: an org's audit log, or the control plane's. */
async function refusals(client: ApiClient, path: string, code: string): Promise<Entry[]> {
  const res = await client.get(`${path}?outcome=failure&limit=1000`);
  assert.equal(res.status, 200);
  return (res.body.entries as Entry[]).filter((e) => e.body.error?.code === code);
}

/**
 * A PUT whose body arrives in pieces, chunked: the upload runs (holding what it holds) until
 * finish() sends the rest. `answer` settles whenever the server answers, early refusals too.
 */
function slowUpload(url: string, headers: Record<string, string>) {
  const req = httpRequest(url, { method: 'PUT', headers: { ...headers, 'content-type': 'application/octet-stream' } });
  const answer = new Promise<{ status: number; body: any }>((resolve, reject) => {
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
  });
  req.flushHeaders();
  req.write(randomBytes(1000));
  return {
    answer,
    finish() {
      req.end(randomBytes(1000));
      return answer;
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('abuse limits in Redis: failed authentications per address and per key id, asset links per address, shared by replicas', () => {
  let world: TestWorld;
  let org: OrgClient;
  let secondApi: string;
  const WINDOW_SECONDS = 4;

  before(async () => {
    world = await TestWorld.start({
      orgs: ['acme'],
      config: {
        TRUSTED_PROXIES: '127.0.0.1',
        RATE_LIMIT_AUTH_FAILURES_PER_IP: '5',
        RATE_LIMIT_AUTH_FAILURES_PER_KEY: '3',
        RATE_LIMIT_AUTH_WINDOW_SECONDS: String(WINDOW_SECONDS),
        RATE_LIMIT_ASSET_LINKS_PER_IP: '4',
      },
    });
    org = world.org('acme');
    secondApi = (await world.startApiProcess()).url;
  });
  after(() => world?.stop());

  /** A well-formed key of the org that does not exist (a guess), as a bearer. */
  const guess = (keyId = randomId()) => formatOrgKey(org.id, keyId, generateSecret());
  const from = (address: string) => ({ 'x-forwarded-for': address });
  const controlRefusals = (code: string) => refusals(world.api, 'admin/audit-logs', code);

  test('an address that failed N times gets 429 with Retry-After, valid key or not, until the window passes; other addresses do not; one audit entry', async () => {
    const address = '203.0.113.7';
    for (let i = 0; i < 5; i++) {
      const res = await org.as(guess()).get().set(from(address));
      assert.deepEqual([res.status, res.body.error.code], [401, 'unauthenticated'], `failure ${i + 1}`);
    }
    // The valid key is refused before it is looked up: the check is Redis alone.
    const refused = await org.get().set(from(address));
    assert.deepEqual([refused.status, refused.body.error.code], [429, 'authentication_rate_limited']);
    const retryAfter = Number(refused.headers['retry-after']);
    assert.ok(retryAfter >= 1 && retryAfter <= WINDOW_SECONDS, `Retry-After ${refused.headers['retry-after']}`);
    assert.equal((await org.as(guess()).get().set(from(address))).status, 429);
    assert.equal((await org.get().set(from('203.0.113.8'))).status, 200, 'another address is unaffected');

    const entries = (await controlRefusals('authentication_rate_limited')).filter((e) => e.clientIp === address);
    assert.equal(entries.length, 1, 'the first refusal only');
    assert.deepEqual([entries[0].actor.kind, entries[0].body.error!.status, entries[0].target?.limit], ['anonymous', 429, 'auth_failures_per_ip']);

    await sleep(retryAfter * 1000 + 200);
    assert.equal((await org.get().set(from(address))).status, 200, 'the window has passed');
  });

  test('a key id that failed N times is refused from every address, its valid secret too; other keys are not; one audit entry', async () => {
    const member = await world.addUser(org, 'member');
    const wrong = formatOrgKey(org.id, member.keyId, generateSecret());
    for (let i = 0; i < 3; i++) assert.equal((await org.as(wrong).get().set(from(`198.51.100.${i + 1}`))).status, 401);
    const refused = await org.as(member).get().set(from('198.51.100.50'));
    assert.deepEqual([refused.status, refused.body.error.code], [429, 'authentication_rate_limited']);
    assert.ok(Number(refused.headers['retry-after']) >= 1);
    assert.equal((await org.as(wrong).get().set(from('198.51.100.51'))).status, 429);
    assert.equal((await org.get().set(from('198.51.100.50'))).status, 200, "the org's other keys are unaffected");

    const entries = (await controlRefusals('authentication_rate_limited')).filter((e) => e.target?.limit === 'auth_failures_per_key');
    assert.deepEqual(entries.map((e) => e.target?.subject), [`${org.id}.${member.keyId}`]);
    assert.equal(entries[0].clientIp, '198.51.100.50');
  });

  test('two API processes share the counters', async () => {
    const address = '192.0.2.77';
    const other = org.at(secondApi);
    for (let i = 0; i < 3; i++) assert.equal((await org.as(guess()).get().set(from(address))).status, 401);
    for (let i = 0; i < 2; i++) assert.equal((await other.as(guess()).get().set(from(address))).status, 401);
    assert.equal((await other.get().set(from(address))).status, 429, 'refused on the replica that saw 2 of the 5 failures');
    assert.equal((await org.get().set(from(address))).status, 429);
    assert.equal((await controlRefusals('authentication_rate_limited')).filter((e) => e.clientIp === address).length, 1, 'one entry for both replicas');
  });

  test('anonymous asset-link requests are limited per address, valid links or not; one audit entry', async () => {
    assert.equal((await rawPut(org.url('packages/flyer'), org.headers(), randomBytes(2000))).status, 201);
    const link = await org.post('packages/flyer/versions/1/links').send({});
    assert.equal(link.status, 201);
    const address = '203.0.113.99';
    const get = (path: string, forwarded = address) => rawGet(`${world.url}${path}`, from(forwarded));
    assert.equal((await get(link.body.url)).status, 200);
    assert.equal((await get('/api/v1/assets/not.a.link')).status, 401);
    assert.equal((await get(link.body.url)).status, 200);
    assert.equal((await rawGet(`${secondApi}${link.body.url}`, from(address))).status, 200);
    const refused = await get(link.body.url);
    assert.deepEqual([refused.status, JSON.parse(refused.body.toString()).error.code], [429, 'asset_link_rate_limited']);
    assert.ok(Number(refused.headers['retry-after']) >= 1);
    assert.equal((await get(link.body.url)).status, 429);
    assert.equal((await get(link.body.url, '203.0.113.100')).status, 200, 'another address is unaffected');
    const entries = (await controlRefusals('asset_link_rate_limited')).filter((e) => e.clientIp === address);
    assert.equal(entries.length, 1);
  });
});

describe('concurrent uploads per org, across replicas', () => {
  let world: TestWorld;
  let org: OrgClient;
  let other: OrgClient;

  before(async () => {
    world = await TestWorld.start({ orgs: ['busy', 'calm'], config: { UPLOADS_PER_ORG_CONCURRENT: '2' } });
    [org, other] = [world.org('busy'), world.org('calm')];
  });
  after(() => world?.stop());

  test('uploads past the ceiling get 429 while slow ones hold the slots; a slot frees when an upload ends; one audit entry', async () => {
    const second = org.at((await world.startApiProcess()).url);
    const first = slowUpload(org.url('packages/one'), org.headers());
    const next = slowUpload(second.url('packages/two'), org.headers());
    await sleep(300);
    const refused = await rawPut(org.url('packages/three'), org.headers(), randomBytes(100));
    assert.deepEqual([refused.status, refused.body.error.code], [429, 'concurrent_uploads_exceeded']);
    const again = await rawPut(second.url('packages/three'), org.headers(), randomBytes(100));
    assert.equal(again.status, 429, 'the other replica counts the same slots');
    assert.equal((await rawPut(other.url('packages/three'), other.headers(), randomBytes(100))).status, 201, 'another org is unaffected');

    assert.equal((await first.finish()).status, 201);
    await sleep(200); // the slot is given back once the response has closed
    assert.equal((await rawPut(org.url('packages/three'), org.headers(), randomBytes(100))).status, 201, 'the slot came back');
    assert.equal((await next.finish()).status, 201);

    const entries = await refusals(org, 'audit-logs', 'concurrent_uploads_exceeded');
    assert.equal(entries.length, 1);
    assert.deepEqual([entries[0].actor.kind, entries[0].target?.limit], ['user', 'uploads_per_org']);
  });
});

describe('requests in progress per org in one API process: a flooding org waits in its own queue, another org does not', () => {
  let world: TestWorld;
  let org: OrgClient;
  let other: OrgClient;

  before(async () => {
    world = await TestWorld.start({
      orgs: ['flood', 'quiet'],
      config: { ORG_CONCURRENT_REQUESTS: '2', ORG_QUEUED_REQUESTS: '1', ORG_QUEUE_TIMEOUT_MS: '1500' },
    });
    [org, other] = [world.org('flood'), world.org('quiet')];
  });
  after(() => world?.stop());

  test('past the ceiling an org queues, then gets 429 (queue full or waited too long); another org is served at once', async () => {
    const holding = [slowUpload(org.url('packages/a'), org.headers()), slowUpload(org.url('packages/b'), org.headers())];
    await sleep(300);
    const queued = org.get('packages').then((res) => ({ status: res.status, at: Date.now() }));
    await sleep(100);
    const full = await org.get('packages');
    assert.deepEqual([full.status, full.body.error.code, full.headers['retry-after']], [429, 'organization_busy', '1'], 'the queue holds one');

    const started = Date.now();
    assert.equal((await other.get('packages')).status, 200);
    assert.ok(Date.now() - started < 1000, 'the other org does not wait behind this one');

    const finished = Date.now();
    assert.equal((await holding[0].finish()).status, 201);
    const served = await queued;
    assert.equal(served.status, 200, 'the queued request got the turn that freed');
    assert.ok(served.at >= finished);

    // Both turns held again: a request waits ORG_QUEUE_TIMEOUT_MS, then 429.
    holding[0] = slowUpload(org.url('packages/c'), org.headers());
    await sleep(300);
    const waited = Date.now();
    const timedOut = await org.get('packages');
    assert.deepEqual([timedOut.status, timedOut.body.error.code], [429, 'organization_busy']);
    assert.ok(Date.now() - waited >= 1400, `answered after ${Date.now() - waited} ms`);

    for (const upload of holding) assert.equal((await upload.finish()).status, 201);
    assert.equal((await org.get('packages')).status, 200);
    const entries = await refusals(org, 'audit-logs', 'organization_busy');
    assert.equal(entries.length, 1, 'two refusals, the first audited');
    assert.deepEqual([entries[0].actor.kind, entries[0].target?.limit], ['user', 'org_requests']);
  });
});
