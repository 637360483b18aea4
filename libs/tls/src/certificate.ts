import { X509Certificate, createPrivateKey } from 'node:crypto';
import { isIP } from 'node:net';
import type { CertificatePair } from './tls-options';

export interface CertificateInfo {
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** DNS names and IP addresses of the subjectAltName. */
  names: string[];
}

/** Parses the leaf and checks that the key belongs to it; throws on anything unusable. */
export function inspectPair(pair: CertificatePair): CertificateInfo {
  const leaf = new X509Certificate(pair.cert);
  if (!leaf.checkPrivateKey(createPrivateKey(pair.key))) throw new Error('the private key does not match the certificate');
  return {
    serial: leaf.serialNumber,
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    names: (leaf.subjectAltName ?? '')
      .split(', ')
      .map((entry) => entry.replace(/^(DNS|IP Address):/, ''))
      .filter(Boolean),
  };
}

const DAY = 86_400_000;

/**
 * When a certificate should be renewed: once a third of its lifetime or 30 days remain,
 * whichever comes first (ADR 0002), but never later than half-way, so that short-lived
 * certificates (45-day Let's Encrypt, 2-minute test certificates) get the same proportion.
 */
export function renewalDue(info: Pick<CertificateInfo, 'notBefore' | 'notAfter'>): Date {
  const lifetime = info.notAfter.getTime() - info.notBefore.getTime();
  const margin = Math.min(Math.max(lifetime / 3, 30 * DAY), lifetime / 2);
  return new Date(info.notAfter.getTime() - margin);
}

/** When failing renewals become an alert: 14 days before expiry, scaled as renewalDue scales 30. */
export function renewalAlert(info: Pick<CertificateInfo, 'notBefore' | 'notAfter'>): Date {
  const margin = info.notAfter.getTime() - renewalDue(info).getTime();
  return new Date(info.notAfter.getTime() - (margin * 14) / 30);
}

const MAX_RETRY_MS = 6 * 3_600_000;

/**
 * When to try again after the `failures`-th failed renewal in a row: `baseMs` doubling per
 * failure, at most 6 hours and at most a thirtieth of the lifetime (so a short-lived certificate
 * gets as many attempts as a long one), and never past the alert time while it is ahead: the
 * attempt that decides whether the alert fires happens exactly then.
 */
export function nextRenewalAttempt(
  info: Pick<CertificateInfo, 'notBefore' | 'notAfter'> | undefined,
  failures: number,
  now: Date,
  baseMs: number,
): Date {
  const lifetime = info ? info.notAfter.getTime() - info.notBefore.getTime() : Infinity;
  const delay = Math.min(baseMs * 2 ** Math.min(failures - 1, 30), Math.max(baseMs, Math.min(MAX_RETRY_MS, lifetime / 30)));
  const next = new Date(now.getTime() + delay);
  const alertAt = info && renewalAlert(info);
  return alertAt && alertAt > now && alertAt < next ? alertAt : next;
}

/** The names of TLS_DOMAINS, and loopback for clients on the machine itself. */
export function certificateNames(domains: string, withLoopback: boolean): string[] {
  const names = domains.split(',').map((d) => d.trim().toLowerCase()).filter(Boolean);
  return [...new Set(withLoopback ? [...names, 'localhost', '127.0.0.1', '::1'] : names)];
}

export function subjectAltName(names: string[]): string {
  return names.map((name) => (isIP(name) ? `IP:${name}` : `DNS:${name}`)).join(',');
}

/** True when `info` covers every name (X509Certificate shows IPv6 addresses uncompressed). */
export function coversNames(info: Pick<CertificateInfo, 'names'>, names: string[]): boolean {
  const normal = (n: string) => (isIP(n) === 6 ? new URL(`http://[${n}]`).hostname : n.toLowerCase());
  const have = new Set(info.names.map(normal));
  return names.every((n) => have.has(normal(n)));
}
