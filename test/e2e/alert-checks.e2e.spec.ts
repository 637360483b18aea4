import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SchedulerRegistry } from '@nestjs/schedule';
import { AuditDeliveryService } from '@coffer/audit';
import { AlertChecksService } from '@coffer/metrics';
import { OrgRegistry } from '@coffer/tenancy';
import { TestWorld } from '../support/world';

describe('operator alerts: KMS down and recovered, audit delivery lagging (worker, Redis; Vault transit double, s3rver, a webhook receiver over HTTP)', () => {
  let world: TestWorld;

  before(async () => {
    world = await TestWorld.start({
      vault: true,
      s3: ['audit'],
      webhook: true,
      config: { ALERT_CHECK_CRON: '* * * * * *', AUDIT_DELIVERY_CRON: '0 0 1 1 *' },
      orgs: ['acme'],
      worker: true,
    });
  });

  after(() => world?.stop());

  const sent = (name: string) => world.webhook.received.filter((b) => b.commonLabels.alertname === name).map((b) => b.status);
  const until = async (what: string, done: () => boolean) => {
    const deadline = Date.now() + 15_000;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(world.webhook.received.map((b) => [b.commonLabels.alertname, b.status]))}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  test('a sealed KMS raises KmsUnavailable once, however many checks run, and unsealing resolves it', async () => {
    world.vault.seal();
    try {
      await until('the firing alert', () => sent('KmsUnavailable').length === 1);
      await new Promise((resolve) => setTimeout(resolve, 2_500)); // two or three more checks
      assert.deepEqual(sent('KmsUnavailable'), ['firing']);
      const [firing] = world.webhook.received.filter((b) => b.commonLabels.alertname === 'KmsUnavailable');
      assert.equal(firing.commonLabels.severity, 'critical');
      assert.equal(firing.alerts[0].annotations.summary, 'The KMS is sealed');
    } finally {
      world.vault.unseal();
    }
    await until('the resolution', () => sent('KmsUnavailable').length === 2);
    assert.deepEqual(sent('KmsUnavailable'), ['firing', 'resolved']);
  });

  test('entries waiting longer than AUDIT_DELIVERY_LAG_ALERT_SECONDS raise AuditDeliveryLagging; delivering resolves it', async () => {
    const org = world.org('acme');
    const put = await org.put('audit-logs/destination').send(world.s3.destination('audit', 'p'));
    assert.equal(put.status, 204);
    // The schedule's own checks run on the real clock, which would resolve the alert at once.
    const { worker } = world;
    worker.get(SchedulerRegistry).getCronJob('alert-checks').stop();
    const checks = worker.get(AlertChecksService);
    // A controllable clock for the threshold; the delivery state and the webhook are real.
    const soon = new Date(Date.now() + 59 * 60_000);
    assert.deepEqual((await checks.run(soon)).lagging, []);
    const later = new Date(Date.now() + 61 * 60_000);
    assert.deepEqual((await checks.run(later)).lagging, [org.slug]);
    await until('the lag alert', () => sent('AuditDeliveryLagging').length === 1);
    const resolved = await worker.get(OrgRegistry).resolve(org.slug);
    assert.ok((await worker.get(AuditDeliveryService).deliver(resolved)) >= 1);
    assert.deepEqual((await checks.run(later)).lagging, []);
    await until('its resolution', () => sent('AuditDeliveryLagging').length === 2);
    assert.deepEqual(sent('AuditDeliveryLagging'), ['firing', 'resolved']);
    assert.equal(world.webhook.received.find((b) => b.commonLabels.alertname === 'AuditDeliveryLagging')!.commonLabels.org, org.slug);
  });
});
