import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InternalCaSource, inspectPair, readPair } from '@coffer/tls';

const dir = mkdtempSync(join(tmpdir(), 'coffer-internal-ca-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const served = async (source: InternalCaSource) => inspectPair(await readPair(source.files));

test('the internal CA issues a leaf for the names that verifies against ca.crt, keys 0600 in a 0700 directory', async () => {
  const tls = join(dir, 'first');
  const events: string[] = [];
  const source = new InternalCaSource(tls, ['vault.local', '127.0.0.1'], (e) => events.push(e.created));
  await source.refresh('start');
  assert.deepEqual(events, ['ca', 'leaf']);
  const ca = new X509Certificate(readFileSync(source.caCertFile));
  const leaf = new X509Certificate(readFileSync(source.files.certFile));
  assert.ok(ca.ca, 'ca.crt is a CA');
  assert.ok(leaf.verify(ca.publicKey));
  assert.ok(!leaf.ca);
  assert.deepEqual((await served(source)).names, ['vault.local', '127.0.0.1']);
  assert.equal(statSync(tls).mode & 0o777, 0o700);
  assert.equal(statSync(source.files.keyFile).mode & 0o777, 0o600);
  assert.equal(statSync(join(tls, 'ca.key')).mode & 0o777, 0o600);

  await source.refresh('check');
  assert.deepEqual(events, ['ca', 'leaf'], 'nothing is re-issued while the leaf is current');
});

test('the leaf is re-issued when the names change, when renewal is due, and when the CA was replaced', async () => {
  const tls = join(dir, 'second');
  await new InternalCaSource(tls, ['a.local']).refresh('start');
  const first = await served(new InternalCaSource(tls, ['a.local']));

  const renamed = new InternalCaSource(tls, ['a.local', 'b.local']);
  await renamed.refresh('check');
  const second = await served(renamed);
  assert.notEqual(second.serial, first.serial);
  assert.deepEqual(second.names, ['a.local', 'b.local']);

  await renamed.refresh('check', new Date(Date.now() + 300 * 86_400_000));
  const third = await served(renamed);
  assert.notEqual(third.serial, second.serial, 'renewed when a third of the lifetime remains');

  rmSync(join(tls, 'ca.crt'));
  rmSync(join(tls, 'ca.key'));
  const other = new InternalCaSource(tls, ['a.local', 'b.local']);
  await other.refresh('check');
  const leaf = new X509Certificate(readFileSync(other.files.certFile));
  assert.ok(leaf.verify(new X509Certificate(readFileSync(other.caCertFile)).publicKey), 'signed by the new CA');
});
