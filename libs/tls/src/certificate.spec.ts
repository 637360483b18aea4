import { test } from 'node:test';
import assert from 'node:assert/strict';
import { certificateNames, coversNames, renewalDue, subjectAltName } from './certificate';

const DAY = 86_400_000;
const at = (days: number) => new Date(Date.UTC(2030, 0, 1) + days * DAY);

test('renewal is due when 30 days remain of a 90-day certificate, a third of a year-long one', () => {
  assert.deepEqual(renewalDue({ notBefore: at(0), notAfter: at(90) }), at(60));
  assert.deepEqual(renewalDue({ notBefore: at(0), notAfter: at(365) }), at(365 - 365 / 3));
});

test('short-lived certificates renew half-way, not immediately', () => {
  assert.deepEqual(renewalDue({ notBefore: at(0), notAfter: at(45) }), at(22.5));
  const start = new Date('2030-01-01T00:00:00Z');
  const twoMinutes = { notBefore: start, notAfter: new Date(start.getTime() + 120_000) };
  assert.equal(renewalDue(twoMinutes).getTime() - start.getTime(), 60_000);
});

test('certificate names: TLS_DOMAINS, deduplicated, with loopback when asked', () => {
  assert.deepEqual(certificateNames(' Vault.Example.com,vault.example.com ', false), ['vault.example.com']);
  assert.deepEqual(certificateNames('vault.example.com', true), ['vault.example.com', 'localhost', '127.0.0.1', '::1']);
  assert.equal(subjectAltName(['a.example', '127.0.0.1', '::1']), 'DNS:a.example,IP:127.0.0.1,IP:::1');
});

test('a certificate covers names case-insensitively and matches IPv6 however it is written', () => {
  const info = { serial: '01', notBefore: at(0), notAfter: at(1), names: ['localhost', '127.0.0.1', '0:0:0:0:0:0:0:1'] };
  assert.ok(coversNames(info, ['LOCALHOST', '::1', '127.0.0.1']));
  assert.ok(!coversNames(info, ['vault.example.com']));
});
