import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AlertStateRepository, AlertsService, AlertWebhooksRepository } from '@coffer/alerts';
import { createLogger } from '@coffer/logging';
import { createTestEnv, TestEnv } from '../support/test-env';
import { startWebhookReceiver, WebhookReceiver } from '../support/webhook';

describe('alerts: Alertmanager-format webhooks, once per state change (Redis, a real HTTP receiver)', () => {
  let env: TestEnv;
  let state: AlertStateRepository;
  let alerts: AlertsService;
  let first: WebhookReceiver;
  let second: WebhookReceiver;
  let logs = '';
  const alert = (labels: Record<string, string>) => ({
    name: 'TestConditionFailing',
    labels,
    severity: 'warning' as const,
    summary: 'a test condition fails',
    startsAt: new Date('2030-01-01T00:00:00Z'),
  });

  before(async () => {
    [first, second] = await Promise.all([startWebhookReceiver(), startWebhookReceiver()]);
    env = await createTestEnv({ ALERT_WEBHOOK_URLS: `${first.url}, ${second.url}?token=secret-in-url` });
    state = new AlertStateRepository(env.config);
    alerts = new AlertsService(createLogger('info', { write: (line: string) => void (logs += line) }), state, new AlertWebhooksRepository(env.config));
  });

  after(async () => {
    state?.onApplicationShutdown();
    await env?.destroy();
    await first?.close();
    await second?.close();
  });

  test('fires once to every webhook, resolves once, and tells instances apart by their labels', async () => {
    assert.equal(await alerts.fire(alert({ thing: 'a' })), true);
    assert.equal(await alerts.fire(alert({ thing: 'a' })), false, 'already firing');
    assert.equal(await alerts.fire(alert({ thing: 'b' })), true, 'another instance');
    assert.equal(first.received.length, 2);
    assert.equal(second.received.length, 2);
    const [body] = first.received;
    assert.equal(body.version, '4');
    assert.equal(body.status, 'firing');
    assert.deepEqual(body.alerts[0].labels, { alertname: 'TestConditionFailing', severity: 'warning', thing: 'a' });
    assert.equal(body.alerts[0].endsAt, '0001-01-01T00:00:00Z');

    const endsAt = new Date('2030-01-02T00:00:00Z');
    assert.equal(await alerts.resolve(alert({ thing: 'a' }), endsAt), true);
    assert.equal(await alerts.resolve(alert({ thing: 'a' }), endsAt), false, 'nothing left to resolve');
    const resolved = first.received[2];
    assert.equal(resolved.status, 'resolved');
    assert.equal(resolved.alerts[0].fingerprint, body.alerts[0].fingerprint);
    assert.equal(resolved.alerts[0].startsAt, '2030-01-01T00:00:00.000Z');
    assert.equal(resolved.alerts[0].endsAt, endsAt.toISOString());
    assert.equal(first.received.length, 3);
  });

  test('a firing no webhook accepted is sent again at the next report', async () => {
    first.status = 500;
    second.status = 503;
    const before = first.received.length;
    await alerts.fire(alert({ thing: 'c' }));
    first.status = 204;
    assert.equal(await alerts.fire(alert({ thing: 'c' })), true, 'not remembered as delivered');
    assert.equal(first.received.length, before + 2);
    assert.equal(await alerts.fire(alert({ thing: 'c' })), false);
    assert.match(logs, /alert webhook failed/);
    assert.ok(!logs.includes('secret-in-url'), 'webhook URLs are logged by origin only');
  });
});
