import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { AcmeRepository, AcmeSource, CertificatePair, InternalCaRepository, InternalCaSource, inspectPair, readPair } from '@coffer/tls';

const root = mkdtempSync(join(tmpdir(), 'coffer-acme-source-'));
after(() => rmSync(root, { recursive: true, force: true }));
const DAY = 86_400_000;

/** A stand-in CA: orders succeed or fail on demand and are counted; certificates are real. */
async function fixture(name: string) {
  const dir = join(root, name);
  const ca = new InternalCaRepository(join(dir, 'fake-acme-ca'));
  await ca.ensureCa('fake ACME CA');
  const state = { orders: 0, fail: false, validityDays: 90 };
  const acme = {
    async order(names: string[]): Promise<CertificatePair> {
      state.orders += 1;
      if (state.fail) throw new Error('urn:ietf:params:acme:error:connection');
      const out = join(dir, `order-${state.orders}`);
      mkdirSync(out);
      const files = { certFile: join(out, 'c.pem'), keyFile: join(out, 'k.pem') };
      await ca.issueLeaf(names, files, state.validityDays);
      return { cert: readFileSync(files.certFile, 'utf8'), key: readFileSync(files.keyFile, 'utf8') };
    },
  } as unknown as AcmeRepository;
  const logs: { level: string; msg: string }[] = [];
  const logger = Object.fromEntries(
    ['info', 'warn', 'error'].map((level) => [level, (_fields: object, msg: string) => logs.push({ level, msg })]),
  ) as unknown as Logger;
  const fallback = new InternalCaSource(join(dir, 'tls'), ['vault.example.com', 'localhost']);
  const source = new AcmeSource(join(dir, 'tls'), ['vault.example.com'], acme, fallback, 1000, logger);
  return { source, fallback, state, logs };
}

test('serves the internal CA until the first order, then the ACME certificate', async () => {
  const { source, fallback, state } = await fixture('first');
  await source.refresh('start');
  assert.equal(state.orders, 0, 'no order before the plain-HTTP port listens');
  assert.deepEqual(source.files, fallback.files);
  assert.equal(source.caCertFile, fallback.caCertFile);
  await source.refresh('check');
  assert.equal(state.orders, 1);
  assert.notDeepEqual(source.files, fallback.files);
  assert.deepEqual(inspectPair(await readPair(source.files)).names, ['vault.example.com']);
  await source.refresh('check');
  assert.equal(state.orders, 1, 'a current certificate is not ordered again');
});

test('failed orders back off and are errors while nothing valid is served', async () => {
  const { source, state, logs } = await fixture('failing');
  state.fail = true;
  const now = Date.now();
  await source.refresh('start', new Date(now));
  await source.refresh('check', new Date(now));
  await source.refresh('check', new Date(now + 500));
  assert.equal(state.orders, 1, 'the retry waits for the backoff');
  await source.refresh('check', new Date(now + 2001));
  assert.equal(state.orders, 2);
  await source.refresh('check', new Date(now + 2001 + 3000));
  assert.equal(state.orders, 2, 'the backoff doubles');
  assert.deepEqual(logs.map((l) => l.level), ['error', 'error']);
  assert.match(logs[0].msg, /serving the internal CA certificate meanwhile/);
});

test('a failing renewal is a warning until the alert time, then an error; the old certificate stays', async () => {
  const { source, state, logs } = await fixture('renewal');
  const now = Date.now();
  await source.refresh('check', new Date(now));
  const first = inspectPair(await readPair(source.files)).serial;
  state.fail = true;
  // 90 days: renewal due at 60 days, alert at 90 - 14 = 76 days.
  await source.refresh('check', new Date(now + 61 * DAY));
  await source.refresh('check', new Date(now + 77 * DAY));
  assert.deepEqual(logs.map((l) => l.level), ['info', 'warn', 'error']);
  assert.match(logs[2].msg, /renewal failing; the certificate expires soon/);
  assert.equal(inspectPair(await readPair(source.files)).serial, first);
  state.fail = false;
  await source.refresh('check', new Date(now + 78 * DAY));
  assert.notEqual(inspectPair(await readPair(source.files)).serial, first, 'renewed once the CA answers');
});
