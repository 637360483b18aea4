import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as acmeClient from 'acme-client';
import { AlertStateRepository, AlertsService, AlertWebhooksRepository } from '@coffer/alerts';
import { AuditRepository, AuditService, ChainedEntry } from '@coffer/audit';
import { DatabaseService, SchemaService } from '@coffer/database';
import { AppError, EgressHttpsAgent, EgressPolicy } from '@coffer/http';
import { JobsService } from '@coffer/jobs';
import { createKmsProvider } from '@coffer/kms';
import { createLogger } from '@coffer/logging';
import {
  AcmeRepository,
  CertificateRenewalService,
  CertificatesRepository,
  ChallengeStore,
  ClockRepository,
  InternalCaSource,
  inspectPair,
  OrderLock,
  renewalAlert,
  StoredAcmeSource,
  StoredCertificate,
} from '@coffer/tls';
import { freePort } from '../support/api-process';
import { Pebble, startPebble } from '../support/pebble';
import { connect, createTestEnv, TestEnv } from '../support/test-env';
import { OpenBaoDouble } from '../support/openbao-double';
import { startWebhookReceiver, WebhookReceiver } from '../support/webhook';

const DAY = 86_400_000;
const HOUR = 3_600_000;

/** The clock the renewal reads: moved by the test, so 90 days pass in seconds. */
class TestClock extends ClockRepository {
  at = new Date();
  override now(): Date {
    return new Date(this.at);
  }
}

describe('certificate renewal in the worker: pebble for the protocol, a controllable clock for the days (PostgreSQL, Redis)', () => {
  let dir: string;
  let pebble: Pebble;
  let env: TestEnv;
  let db: DatabaseService;
  let jobs: JobsService;
  let certificates: CertificatesRepository;
  let renewal: CertificateRenewalService;
  let auditService: AuditService;
  let webhook: WebhookReceiver;
  let alertState: AlertStateRepository;
  const clock = new TestClock();
  let id: string;

  /** One run of the renew-certificate job, as the worker runs it (audited as system:renew-certificate). */
  const runJob = (force = false) =>
    auditService.run({
      actor: { kind: 'system', id: 'system:renew-certificate' },
      source: { requestId: null, clientIp: null, userAgent: null },
      transactional: true,
      chain: () => auditService.chain(undefined),
      work: () => renewal.renew(id, force),
    });
  const row = async (): Promise<StoredCertificate> => (await certificates.get(id))!;
  const entries = async (action: string) => {
    const all: ChainedEntry[] = [];
    for await (const entry of auditService.scan(auditService.chain(undefined))) if (entry.action === action) all.push(entry);
    return all;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coffer-renewal-'));
    webhook = await startWebhookReceiver();
    // 90-day certificates, as Let's Encrypt issues today; no listener answers HTTP-01 here.
    pebble = await startPebble(join(dir, 'pebble'), { httpPort: await freePort(), validitySeconds: 90 * 86_400, acmePort: await freePort(), alwaysValid: true });
    env = await createTestEnv({
      TLS_MODE: 'acme',
      TLS_DOMAINS: 'vault.coffer.test,www.coffer.test',
      ACME_DIRECTORY_URL: pebble.directoryUrl,
      ACME_SELF_CHECK: 'false',
      TLS_RENEWAL_RETRY_MS: String(HOUR),
      ALERT_WEBHOOK_URLS: webhook.url,
    });
    await new SchemaService(env.config).migrateControlPlane();
    const logger = createLogger('silent');
    db = new DatabaseService(env.config);
    const kms = createKmsProvider(env.config, db.control);
    jobs = new JobsService(env.config);
    certificates = new CertificatesRepository(db, kms);
    const egress = new EgressPolicy(env.config.OUTBOUND_ALLOWED_HOSTS);
    const acme = new AcmeRepository(
      { directoryUrl: env.config.ACME_DIRECTORY_URL, selfCheck: false, httpRetries: 0 },
      new ChallengeStore(env.config, jobs),
      certificates,
      egress,
    );
    // This process cannot take NODE_EXTRA_CA_CERTS any more: acme-client's HTTP client trusts pebble's listener CA directly.
    acmeClient.axios.defaults.httpsAgent = new EgressHttpsAgent(egress, { ca: readFileSync(pebble.listenerCaFile) });
    renewal = new CertificateRenewalService(env.config, logger, certificates, acme, new OrderLock(env.config, jobs),
      new AlertsService(logger, (alertState = new AlertStateRepository(env.config)), new AlertWebhooksRepository(env.config)), clock, jobs);
    auditService = new AuditService(new AuditRepository(db), logger, kms);
  });

  after(async () => {
    acmeClient.axios.defaults.httpsAgent = undefined;
    await jobs?.onApplicationShutdown();
    alertState?.onApplicationShutdown();
    await db?.onApplicationShutdown();
    await pebble?.stop();
    await env?.destroy();
    await webhook?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the schedule registers the configured certificate as due at once; the job issues it and stores its key only sealed', async () => {
    const due = await renewal.enqueueDue();
    assert.equal(due.length, 1);
    [id] = due;
    assert.equal(id, renewal.configuredId());
    const queued = await jobs.queue('maintenance').getJob(`renew-certificate/${id}`);
    assert.deepEqual(queued?.data.certificateId, id, 'enqueued with the fixed job id');
    await renewal.enqueueDue();
    assert.equal(await jobs.queue('maintenance').count(), 1, 'a second tick enqueues nothing new');

    assert.equal(await runJob(), 'issued', String((await row()).lastError));
    const issued = await row();
    const pair = (await certificates.pair(id))!;
    const info = inspectPair(pair);
    assert.equal(issued.serial, info.serial);
    assert.deepEqual([...info.names].sort(), ['vault.coffer.test', 'www.coffer.test']);
    assert.ok(Math.abs(issued.notAfter!.getTime() - issued.notBefore!.getTime() - 90 * DAY) < 60_000, 'a 90-day certificate');
    assert.deepEqual(issued.renewAfter, new Date(issued.notAfter!.getTime() - 30 * DAY), 'renewal 30 days before expiry');
    assert.equal(issued.failures, 0);

    const owner = await connect(env.config.DATABASE_OWNER_URL);
    try {
      const stored = (await owner.query('SELECT key_sealed, key_wrapped_dek FROM tls_certificates WHERE id = $1', [id])).rows[0];
      const keyBody = pair.key.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
      assert.ok(!stored.key_sealed.includes(Buffer.from('PRIVATE KEY')) && !stored.key_sealed.toString('base64').includes(keyBody.slice(0, 40)));
      assert.match(stored.key_wrapped_dek, /^local:v1:/, 'the data key is stored wrapped by the KMS');
      const account = (await owner.query('SELECT key_sealed FROM acme_accounts WHERE directory_url = $1', [pebble.directoryUrl])).rows[0];
      assert.ok(account && !account.key_sealed.includes(Buffer.from('PRIVATE KEY')), 'the ACME account key is stored, sealed');
      // Moved to another row, a sealed key does not open (the row is associated data).
      await owner.query(`INSERT INTO tls_certificates (id, source, domains, renew_after, cert_pem, key_wrapped_dek, key_sealed)
        SELECT 'acme-copy', source, domains, renew_after, cert_pem, key_wrapped_dek, key_sealed FROM tls_certificates WHERE id = $1`, [id]);
      await assert.rejects(certificates.pair('acme-copy'));
      await owner.query("DELETE FROM tls_certificates WHERE id = 'acme-copy'");
    } finally {
      await owner.end();
    }
    const [entry] = await entries('certificate.issued');
    assert.equal(entry.actor.id, 'system:renew-certificate');
    assert.deepEqual(entry.target, { id });
    assert.equal(entry.body.serial, info.serial);
  });

  test('replicas serve the stored certificate; with the KMS down one keeps what it serves, one starting serves the internal CA until the key opens (Vault double)', async () => {
    const vault = new OpenBaoDouble();
    await vault.start();
    const vaultKms = () =>
      createKmsProvider({ ...env.config, KMS_PROVIDER: 'vault', KMS_VAULT_ADDR: vault.address, KMS_VAULT_TOKEN: vault.token, KMS_VAULT_TIMEOUT_MS: 1000 }, db.control);
    const names = ['vault.coffer.test', 'www.coffer.test'];
    const vaultId = 'acme-sealed-by-vault';
    const owner = await connect(env.config.DATABASE_OWNER_URL);
    try {
      await owner.query("INSERT INTO tls_certificates (id, source, domains, renew_after) VALUES ($1, 'acme', $2, 'infinity')", [vaultId, names]);
      const pair = (await certificates.pair(id))!;
      await new CertificatesRepository(db, vaultKms()).saveIssued(vaultId, pair, inspectPair(pair), new Date(8.64e15), new Date());
      const fallback = new InternalCaSource(join(dir, 'replica-tls'), [...names, 'localhost']);
      const running = new StoredAcmeSource(vaultId, names, new CertificatesRepository(db, vaultKms()), fallback);
      await running.refresh('start');
      assert.equal(inspectPair(await running.pair()).serial, inspectPair(pair).serial);
      assert.equal(running.caCertFile, undefined, 'no internal CA to trust');

      vault.seal();
      await running.refresh('check');
      assert.equal(inspectPair(await running.pair()).serial, inspectPair(pair).serial, 'an unchanged serial needs no KMS call');
      const errors: unknown[] = [];
      const starting = new StoredAcmeSource(vaultId, names, new CertificatesRepository(db, vaultKms()), fallback, (error) => errors.push(error));
      await starting.refresh('start');
      assert.equal((errors[0] as { code?: string }).code, 'kms_unavailable');
      assert.deepEqual(await starting.pair(), await fallback.pair(), 'the internal CA meanwhile');
      vault.unseal();
      await starting.refresh('check');
      assert.equal(inspectPair(await starting.pair()).serial, inspectPair(pair).serial, 'the stored certificate once the KMS is back');
    } finally {
      await owner.query('DELETE FROM tls_certificates WHERE id = $1', [vaultId]);
      await owner.end();
      await vault.stop();
    }
  });

  test('with the ACME server down, renewal retries with backoff and the alert fires exactly at 14 days before expiry, once', async () => {
    await pebble.stop();
    const issued = await row();
    const alertAt = renewalAlert({ notBefore: issued.notBefore!, notAfter: issued.notAfter! });
    assert.deepEqual(alertAt, new Date(issued.notAfter!.getTime() - 14 * DAY));

    clock.at = new Date(issued.renewAfter.getTime() - 1);
    assert.deepEqual(await certificates.due(clock.now()), [], 'not due a millisecond early');
    assert.equal(await runJob(), 'not_due');

    clock.at = issued.renewAfter;
    assert.deepEqual(await certificates.due(clock.now()), [id]);
    assert.equal(await runJob(), 'failed');
    let state = await row();
    assert.equal(state.failures, 1);
    assert.match(state.lastError!, /the ACME server did not answer at https:\/\/127\.0\.0\.1:\d+\/dir/);
    assert.deepEqual(state.lastAttemptAt, clock.at);
    assert.deepEqual(state.nextAttemptAt, new Date(clock.at.getTime() + HOUR), 'first retry after TLS_RENEWAL_RETRY_MS');
    assert.equal(state.serial, issued.serial, 'the current certificate stays');

    const delays: number[] = [];
    while (state.nextAttemptAt! < alertAt) {
      clock.at = new Date(state.nextAttemptAt!.getTime() - 1);
      assert.deepEqual(await certificates.due(clock.now()), [], 'nothing is due during the backoff');
      const previous = state.nextAttemptAt!;
      clock.at = previous;
      assert.equal(await runJob(), 'failed');
      state = await row();
      delays.push(state.nextAttemptAt!.getTime() - previous.getTime());
      assert.equal(webhook.received.length, 0, `no alert before the alert time (at ${clock.at.toISOString()})`);
    }
    assert.deepEqual(delays.slice(0, 3), [2 * HOUR, 4 * HOUR, 6 * HOUR], 'the backoff doubles, up to 6 hours');
    assert.deepEqual(state.nextAttemptAt, alertAt, 'an attempt is due exactly at the alert time');
    assert.equal((await entries('certificate.alert_raised')).length, 0);

    clock.at = alertAt;
    assert.equal(await runJob(), 'failed');
    assert.equal(webhook.received.length, 1, 'the alert fires at the alert time');
    const [alert] = webhook.received;
    assert.equal(alert.status, 'firing');
    assert.equal(alert.version, '4');
    assert.equal(alert.alerts[0].labels.alertname, 'CertificateRenewalFailing');
    assert.equal(alert.alerts[0].labels.certificate, id);
    assert.equal(alert.alerts[0].labels.severity, 'critical');
    assert.equal(alert.alerts[0].startsAt, alertAt.toISOString());
    assert.match(alert.alerts[0].annotations.summary, /vault\.coffer\.test/);

    state = await row();
    clock.at = state.nextAttemptAt!;
    assert.equal(await runJob(), 'failed');
    assert.equal(webhook.received.length, 1, 'a renewal still failing does not repeat the alert');
    assert.equal((await entries('certificate.alert_raised')).length, 1);
    const failed = await entries('certificate.renewal_failed');
    assert.equal(failed.length, (await row()).failures, 'every failure is audited');
    assert.equal(failed[0].outcome, 'failure');
    assert.equal(failed[0].actor.id, 'system:renew-certificate');
  });

  test('when the ACME server is back, the next attempt renews and the alert resolves, once', async () => {
    await pebble.restart();
    const before = await row();
    clock.at = before.nextAttemptAt!;
    assert.equal(await runJob(), 'renewed');
    const renewed = await row();
    assert.notEqual(renewed.serial, before.serial);
    assert.equal(renewed.failures, 0);
    assert.equal(renewed.lastError, null);
    assert.equal(renewed.nextAttemptAt, null);
    assert.equal(webhook.received.length, 2);
    assert.equal(webhook.received[1].status, 'resolved');
    assert.equal(webhook.received[1].alerts[0].fingerprint, webhook.received[0].alerts[0].fingerprint);
    assert.equal(webhook.received[1].alerts[0].endsAt, clock.at.toISOString());
    assert.equal((await entries('certificate.renewed')).length, 1);
    assert.equal((await entries('certificate.alert_resolved')).length, 1);

    assert.equal(await runJob(true), 'renewed', `a forced renewal orders whatever the due date (${(await row()).lastError})`);
    assert.equal(webhook.received.length, 2, 'nothing to resolve twice');
  });

  test('a forced renewal of an unknown certificate is certificate_not_found', async () => {
    await assert.rejects(renewal.requestRenewal('acme-0000000000000000'), (e: unknown) => e instanceof AppError && e.code === 'certificate_not_found');
  });
});
