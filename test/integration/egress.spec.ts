import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AlertStateRepository, AlertsService, AlertWebhooksRepository, webhookBody } from '@coffer/alerts';
import { configSchema } from '@coffer/config';
import { EgressPolicy, EgressRefused } from '@coffer/http';
import type { JobsService } from '@coffer/jobs';
import { createLogger } from '@coffer/logging';
import { AcmeRepository, ChallengeStore } from '@coffer/tls';
import { createTestEnv, TestEnv } from '../support/test-env';
import { startWebhookReceiver, WebhookReceiver } from '../support/webhook';

test('OUTBOUND_ALLOWED_HOSTS takes comma-separated host names, IP addresses and CIDRs, and nothing else', () => {
  const setting = configSchema.shape.OUTBOUND_ALLOWED_HOSTS;
  for (const ok of ['', 'minio', ' s3.lan.example , 10.0.0.5,10.20.0.0/16', '::1,fd00::/8,localhost.', 'host_1']) {
    assert.ok(setting.safeParse(ok).success, ok);
  }
  for (const bad of ['http://minio:9000', 'minio:9000', '10.0.0.0/33', 'fd00::/129', 'minio/8', '10.0.0.0/8/8', 'a b', '[::1]', '-bad.example']) {
    assert.ok(!setting.safeParse(bad).success, bad);
  }
});

describe('egress policy at send time: operator settings pointing at refused addresses (Redis, a real HTTP receiver)', () => {
  let env: TestEnv;
  let receiver: WebhookReceiver;
  let state: AlertStateRepository;
  let logs = '';

  before(async () => {
    receiver = await startWebhookReceiver();
    // The production default (no test servers allowed): the receiver on 127.0.0.1 is refused.
    env = await createTestEnv({ ALERT_WEBHOOK_URLS: `${receiver.url}?token=secret-in-url`, OUTBOUND_ALLOWED_HOSTS: '' });
    state = new AlertStateRepository(env.config);
  });

  after(async () => {
    state?.onApplicationShutdown();
    await env?.destroy();
    await receiver?.close();
  });

  const alert = {
    name: 'EgressTestFailing',
    labels: { case: 'refused' },
    severity: 'warning' as const,
    summary: 'a test condition fails',
    startsAt: new Date('2030-01-01T00:00:00Z'),
  };

  test('an alert webhook on loopback is refused and counted as failed, logged without its secret; allowed, it is sent', async () => {
    const refusing = new AlertsService(createLogger('info', { write: (line: string) => void (logs += line) }), state, new AlertWebhooksRepository(env.config));
    const [result] = await new AlertWebhooksRepository(env.config).post(webhookBody('firing', alert, 'fingerprint'));
    assert.match(result.error ?? '', /127\.0\.0\.1 refused: a loopback address; .*OUTBOUND_ALLOWED_HOSTS/);
    assert.equal(await refusing.fire(alert), true, 'the alert started firing');
    assert.equal(receiver.received.length, 0, 'nothing reached the receiver');
    const line = logs.split('\n').find((l) => l.includes('alert webhook failed'));
    assert.ok(line, logs);
    assert.match(line, /loopback address/);
    assert.ok(!logs.includes('secret-in-url'), 'webhook URLs are logged by origin only');

    // Not remembered as delivered: with the receiver allowed, the next report sends it.
    const allowing = new AlertsService(createLogger('silent'), state, new AlertWebhooksRepository({ ...env.config, OUTBOUND_ALLOWED_HOSTS: '127.0.0.1' }));
    assert.equal(await allowing.fire(alert), true);
    assert.equal(receiver.received.length, 1);
  });

  test('an ACME directory on a refused address fails the order with the reason, before any request', async () => {
    const accounts = {
      accountKey: async () => assert.fail('no account is read for a refused directory'),
      saveAccountKey: async () => assert.fail('no account is made for a refused directory'),
    };
    for (const [directoryUrl, refused] of [
      ['https://127.0.0.1:14000/dir', 'loopback'],
      ['https://[fd00::1]/dir', 'unique-local'],
      ['https://acme:14000/dir', 'internal-name'],
    ] as const) {
      // No challenge is ever stored: the order stops before its first request.
      const challenges = new ChallengeStore(env.config, {} as JobsService);
      const acme = new AcmeRepository({ directoryUrl, selfCheck: false, httpRetries: 0 }, challenges, accounts, new EgressPolicy(''));
      await assert.rejects(acme.order(['vault.coffer.test']), (e: unknown) => e instanceof EgressRefused && e.refused === refused && /OUTBOUND_ALLOWED_HOSTS/.test(e.message));
    }
  });
});
