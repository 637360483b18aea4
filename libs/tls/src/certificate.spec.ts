import { test } from 'node:test';
import assert from 'node:assert/strict';
import { certificateNames, coversNames, nextRenewalAttempt, renewalAlert, renewalDue, subjectAltName } from './certificate';

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

test('the alert time is 14 days before expiry of a 90-day certificate, scaled by 14/30 for shorter ones', () => {
  assert.deepEqual(renewalAlert({ notBefore: at(0), notAfter: at(90) }), at(76));
  // 45 days renew half-way (22.5 days before expiry): the alert comes 22.5 * 14/30 = 10.5 days before.
  assert.deepEqual(renewalAlert({ notBefore: at(0), notAfter: at(45) }), at(45 - 10.5));
  const start = new Date('2030-01-01T00:00:00Z');
  const twoMinutes = { notBefore: start, notAfter: new Date(start.getTime() + 120_000) };
  assert.equal(twoMinutes.notAfter.getTime() - renewalAlert(twoMinutes).getTime(), 28_000);
});

test('failed renewals back off exponentially up to 6 hours, and an attempt lands exactly on the alert time', () => {
  const cert = { notBefore: at(0), notAfter: at(90) };
  const hour = 3_600_000;
  assert.deepEqual(nextRenewalAttempt(cert, 1, at(60), hour), new Date(at(60).getTime() + hour));
  assert.deepEqual(nextRenewalAttempt(cert, 3, at(60), hour), new Date(at(60).getTime() + 4 * hour));
  assert.deepEqual(nextRenewalAttempt(cert, 20, at(60), hour), new Date(at(60).getTime() + 6 * hour), 'capped at 6 h');
  assert.deepEqual(nextRenewalAttempt(cert, 20, new Date(at(76).getTime() - hour), hour), at(76), 'not past the alert time');
  assert.deepEqual(nextRenewalAttempt(cert, 20, at(77), hour), new Date(at(77).getTime() + 6 * hour), 'after it, the backoff goes on');
});

test('a two-minute certificate retries at most every 4 s (a thirtieth of its lifetime)', () => {
  const start = new Date('2030-01-01T00:00:00Z');
  const cert = { notBefore: start, notAfter: new Date(start.getTime() + 120_000) };
  const after = (seconds: number) => new Date(start.getTime() + seconds * 1000);
  assert.deepEqual(nextRenewalAttempt(cert, 10, after(60), 1000), after(64));
  assert.deepEqual(nextRenewalAttempt(cert, 10, after(90), 1000), after(92), 'the alert time, 28 s before expiry');
  assert.deepEqual(nextRenewalAttempt(undefined, 3, after(0), 1000), after(4), 'a first order without a certificate: plain backoff');
});
