import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AuditDeliveryService } from '@coffer/audit';
import { EgressRefused } from '@coffer/http';
import { OrgRegistry } from '@coffer/tenancy';
import type { OrgClient } from '../support/client';
import { TestWorld } from '../support/world';

const BUCKET = 'customer-audit';
/** Never delivers on its own: the tests deliver when they mean to. */
const NO_DELIVERY_SCHEDULE = { AUDIT_DELIVERY_CRON: '0 0 1 1 *' };

/**
 * Every class the egress policy refuses, as an org admin would point audit delivery at it, and
 * the words the 400 names it with. Port 9 (discard): nothing would answer there anyway, and an
 * endpoint that got through would answer 422 audit_destination_unreachable instead.
 */
const REFUSED: [endpoint: string, described: RegExp][] = [
  ['http://[::1]:9', /loopback/],
  ['http://127.0.0.2:6379', /loopback/],
  ['http://10.0.0.1', /private \(RFC 1918\)/],
  ['http://172.16.5.4:9000', /private \(RFC 1918\)/],
  ['http://192.168.1.1:9', /private \(RFC 1918\)/],
  ['http://169.254.169.254', /link-local/],
  ['http://[fe80::1]:9', /link-local/],
  ['http://[fd00::1]:9', /unique-local/],
  ['http://100.64.0.1:9', /carrier-grade NAT/],
  ['http://224.0.0.1:9', /multicast/],
  ['http://[ff02::1]:9', /multicast/],
  ['http://0.0.0.0:9', /unspecified/],
  ['http://[::]:9', /unspecified/],
  ['http://[::ffff:127.0.0.1]:9', /loopback/],
  ['http://[::ffff:169.254.169.254]:9', /link-local/],
  ['http://[::ffff:10.0.0.1]:9', /private/],
  ['http://openbao:8200', /single-label name/],
  ['http://postgres:5432', /single-label name/],
  ['http://redis:6379', /single-label name/],
  ['http://minio:9000', /single-label name/],
  ['http://localhost:9', /single-label name/],
  ['http://localhost.:9', /single-label name/],
];

describe('egress policy: audit destinations on internal addresses and names are refused (s3rver on loopback)', () => {
  const secretAccessKey = 'never-echoed-secret-0123456789';
  const refusedAudits = async (org: OrgClient) =>
    (await org.get('audit-logs?action=audit_destination.configured&outcome=failure&limit=1000')).body.entries as { body: { error: unknown } }[];

  /** PUTs each refused endpoint: 400 destination_not_allowed naming the class and the setting, never the secret. */
  async function assertRefusesAll(org: OrgClient, endpoints: [string, RegExp][]) {
    const audited = (await refusedAudits(org)).length;
    for (const [endpoint, described] of endpoints) {
      const res = await org.put('audit-logs/destination').send({ endpoint, bucket: BUCKET, accessKeyId: 'AKID', secretAccessKey });
      assert.deepEqual([endpoint, res.status, res.body.error?.code], [endpoint, 400, 'destination_not_allowed'], JSON.stringify(res.body));
      assert.match(res.body.error.message, described, endpoint);
      assert.match(res.body.error.message, /OUTBOUND_ALLOWED_HOSTS/);
      assert.ok(!JSON.stringify(res.body).includes(secretAccessKey), 'the credentials are never echoed');
    }
    const entries = await refusedAudits(org);
    assert.equal(entries.length, audited + endpoints.length, 'every refusal is audited');
    for (const entry of entries.slice(0, endpoints.length)) assert.deepEqual(entry.body.error, { code: 'destination_not_allowed', status: 400 });
    assert.ok(!JSON.stringify(entries).includes(secretAccessKey), 'no credential in the audit log');
  }

  describe('OUTBOUND_ALLOWED_HOSTS empty (the default)', () => {
    let world: TestWorld;
    before(async () => {
      world = await TestWorld.start({ s3: [BUCKET], config: { OUTBOUND_ALLOWED_HOSTS: '', ...NO_DELIVERY_SCHEDULE }, orgs: ['acme'] });
    });
    after(() => world?.stop());

    test('every refused class answers 400 destination_not_allowed, audited, and nothing is saved; a working loopback S3 server included', async () => {
      const org = world.org('acme');
      await assertRefusesAll(org, [[world.s3.endpoint, /127\.0\.0\.1 refused: a loopback address/], ...REFUSED]);
      const shown = await org.get('audit-logs/destination');
      assert.deepEqual([shown.status, shown.body.error.code], [404, 'audit_destination_not_found'], 'nothing was saved');
    });
  });

  describe('OUTBOUND_ALLOWED_HOSTS=127.0.0.1', () => {
    let world: TestWorld;
    let org: OrgClient;
    before(async () => {
      world = await TestWorld.start({ s3: [BUCKET], config: { OUTBOUND_ALLOWED_HOSTS: '127.0.0.1', ...NO_DELIVERY_SCHEDULE }, orgs: ['acme'] });
      org = world.org('acme');
    });
    after(() => world?.stop());

    test('the allowed loopback S3 server is accepted; every other refused endpoint still answers 400 and the saved destination is unchanged', async () => {
      assert.equal((await org.put('audit-logs/destination').send(world.s3.destination(BUCKET, 'coffer'))).status, 204);
      const stored = async () => {
        const { endpoint, region, bucket, prefix, updatedAt } = (await org.get('audit-logs/destination')).body;
        return { endpoint, region, bucket, prefix, updatedAt };
      };
      const saved = await stored();
      assert.equal(saved.endpoint, world.s3.endpoint);
      // Allowed by address only: ::1, 127.0.0.2 and the name localhost (which resolves to 127.0.0.1) are not.
      const port = new URL(world.s3.endpoint).port;
      const mappedAllowed = 'http://[::ffff:127.0.0.1]:9';
      await assertRefusesAll(org, [[`http://localhost:${port}`, /single-label name/], [`http://[::1]:${port}`, /loopback/], ...REFUSED.filter(([e]) => e !== mappedAllowed)]);
      // The IPv4-mapped form of the allowed address is that address: let through to the HEAD, which finds nothing on port 9.
      const mapped = await org.put('audit-logs/destination').send({ ...world.s3.destination(BUCKET, 'coffer'), endpoint: mappedAllowed });
      assert.deepEqual([mapped.status, mapped.body.error.code], [422, 'audit_destination_unreachable']);
      assert.deepEqual(await stored(), saved, 'the stored destination is untouched');
    });

    test('a worker whose OUTBOUND_ALLOWED_HOSTS does not allow the stored destination refuses to deliver to it at send time', async () => {
      const worker = await world.startWorker({ OUTBOUND_ALLOWED_HOSTS: '' });
      const ref = await worker.get(OrgRegistry).resolve(org.slug);
      await assert.rejects(worker.get(AuditDeliveryService).deliver(ref), (e: unknown) => e instanceof EgressRefused && e.refused === 'loopback');
      assert.deepEqual(world.s3.objects(BUCKET), [], 'nothing reached the bucket');
      await world.stopWorker();
      // The same delivery from the API's process, which allows 127.0.0.1, goes through.
      assert.ok((await world.app.get(AuditDeliveryService).deliver(ref)) >= 1);
      assert.ok(world.s3.objects(BUCKET).length >= 2);
    });
  });
});
