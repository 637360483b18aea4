import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { MetricsService } from '@coffer/metrics';
import type { OrgClient } from '../support/client';
import { connect } from '../support/test-env';
import { TestWorld } from '../support/world';

describe('Prometheus metrics on their own port (API on PostgreSQL and Redis; Vault transit double and s3rver over HTTP)', () => {
  let world: TestWorld;
  let org: OrgClient;

  before(async () => {
    world = await TestWorld.start({ vault: true, s3: ['audit'], orgs: ['acme'] });
    org = world.org('acme');
    const put = await org.put('audit-logs/destination').send(world.s3.destination('audit', 'p'));
    assert.equal(put.status, 204);
  });

  after(() => world?.stop());

  const metricsUrl = () => `http://127.0.0.1:${world.app.get(MetricsService).port}`;
  const scrape = async () => {
    const res = await fetch(`${metricsUrl()}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
    return res.text();
  };
  const value = (text: string, series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };

  test('every line is Prometheus text; latency is labelled by route template, never by the raw URL', async () => {
    await org.get('users');
    const text = await scrape();
    for (const line of text.split('\n').filter(Boolean)) {
      assert.match(line, /^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? -?[\d.e+-]+|\w+(\{[^}]*\})? (NaN|[+-]Inf))$/, line);
    }
    const count = value(text, 'coffer_http_request_duration_seconds_count{method="GET",route="/api/v1/organizations/:org/users",status="200"}');
    assert.ok(count && count >= 1);
    assert.ok(!text.includes(org.slug + '/users'), 'no raw URL');
  });

  test('a request its client abandons before the answer is counted in the latency histogram, as 499', async () => {
    const series = 'coffer_http_request_duration_seconds_count{method="PUT",route="/api/v1/organizations/:org/packages/:name",status="499"}';
    const before = value(await scrape(), series) ?? 0;
    const req = httpRequest(org.url('packages/abandoned'), { method: 'PUT', headers: { ...org.headers(), 'content-type': 'application/octet-stream', 'content-length': '65536' } });
    req.on('error', () => undefined);
    req.write(Buffer.alloc(1024));
    await new Promise((r) => setTimeout(r, 300));
    req.destroy();
    const deadline = Date.now() + 5000;
    while ((value(await scrape(), series) ?? 0) === before) {
      assert.ok(Date.now() < deadline, 'the abandoned upload was never counted');
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(value(await scrape(), series), before + 1, 'counted once');
  });

  test('KMS reachability follows the Vault: 1, 0 while sealed, 1 again', async () => {
    assert.equal(value(await scrape(), 'coffer_kms_up'), 1);
    world.vault.seal();
    try {
      assert.equal(value(await scrape(), 'coffer_kms_up'), 0);
    } finally {
      world.vault.unseal();
    }
    assert.equal(value(await scrape(), 'coffer_kms_up'), 1);
  });

  test('per-org key age, audit delivery backlog and queue depths come from live state', async () => {
    const text = await scrape();
    const age = value(text, `coffer_org_key_age_seconds{org="${org.slug}"}`);
    assert.ok(age !== undefined && age >= 0 && age < 120, `key age ${age}`);
    assert.equal(value(text, `coffer_org_key_rewrap_remaining{org="${org.slug}"}`), 0, 'a key never rotated has a series too: nothing to rewrap');
    const pending = value(text, `coffer_audit_delivery_pending_entries{org="${org.slug}"}`);
    assert.ok(pending !== undefined && pending >= 2, `nothing delivered yet: ${pending} entries pending`);
    for (const queue of ['maintenance', 'provisioning']) assert.notEqual(value(text, `coffer_queue_jobs{queue="${queue}",state="waiting"}`), undefined, queue);
  });

  test('each stored certificate reports its expiry and failed renewals', async () => {
    const owner = await connect(world.config.DATABASE_OWNER_URL);
    try {
      await owner.query(
        `INSERT INTO tls_certificates (id, source, domains, not_after, renew_after, failures)
         VALUES ('metrics-test', 'acme', '{coffer.example}', now() + interval '10 days', now(), 2)`,
      );
    } finally {
      await owner.end();
    }
    const text = await scrape();
    const expiry = value(text, 'coffer_certificate_expiry_seconds{certificate="metrics-test"}');
    assert.ok(expiry !== undefined && Math.abs(expiry - 10 * 86_400) < 120, `expiry ${expiry}`);
    assert.equal(value(text, 'coffer_certificate_renewal_failures{certificate="metrics-test"}'), 2);
  });

  test('the metrics port serves nothing else, and the API port does not serve metrics', async () => {
    assert.equal((await fetch(`${metricsUrl()}/api/v1/organizations`)).status, 404);
    assert.equal((await world.http().get('/metrics')).status, 404);
  });
});
