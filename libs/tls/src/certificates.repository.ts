import { createHash, X509Certificate } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { aeadOpen, aeadSeal } from '@coffer/crypto';
import { DatabaseService } from '@coffer/database';
import { KMS, KmsProvider } from '@coffer/kms';
import { CertificateInfo } from './certificate';
import type { CertificatePair } from './tls-options';

/** The KMS key under which the installation's own secrets (TLS and ACME keys) are sealed. */
export const PLATFORM_KEY = 'coffer-platform';

export type CertificateSourceKind = 'acme' | 'internal-ca' | 'files';

/** A certificate's row without its private key. */
export interface StoredCertificate {
  id: string;
  source: CertificateSourceKind;
  domains: string[];
  issuer: string | null;
  serial: string | null;
  notBefore: Date | null;
  notAfter: Date | null;
  certPem: string | null;
  renewAfter: Date;
  nextAttemptAt: Date | null;
  lastAttemptAt: Date | null;
  lastError: string | null;
  failures: number;
}

interface Row {
  id: string;
  source: CertificateSourceKind;
  domains: string[];
  issuer: string | null;
  serial: string | null;
  not_before: Date | null;
  not_after: Date | null;
  cert_pem: string | null;
  renew_after: Date;
  next_attempt_at: Date | null;
  last_attempt_at: Date | null;
  last_error: string | null;
  failures: number;
}

const COLUMNS = `id, source, domains, issuer, serial, not_before, not_after, cert_pem, renew_after,
  next_attempt_at, last_attempt_at, last_error, failures`;

/** The certificate of a set of names: the same id on every replica and worker, from config alone. */
export function certificateId(source: CertificateSourceKind, names: string[]): string {
  return `${source}-${createHash('sha256').update([...names].sort().join(',')).digest('hex').slice(0, 16)}`;
}

/**
 * Certificates and ACME account keys in the control-plane database. A private key is stored
 * only sealed: AES-256-GCM under a fresh data key from the KMS key `coffer-platform`, the data
 * key kept wrapped beside it, and the table, row and column as associated data, so a sealed
 * key moved to another row does not open. Plaintext keys exist in process memory only.
 */
@Injectable()
export class CertificatesRepository {
  constructor(
    private readonly db: DatabaseService,
    @Inject(KMS) private readonly kms: KmsProvider,
  ) {}

  /** Registers the certificate for `domains` (due at once) and retires the source's others. */
  async ensure(id: string, source: CertificateSourceKind, domains: string[], now: Date): Promise<void> {
    await this.db.control.query(
      `INSERT INTO tls_certificates (id, source, domains, renew_after) VALUES ($1, $2, $3, $4)
       ON CONFLICT (id) DO UPDATE SET retired_at = NULL WHERE tls_certificates.retired_at IS NOT NULL`,
      [id, source, domains, now],
    );
    await this.db.control.query(
      'UPDATE tls_certificates SET retired_at = $3, updated_at = $3 WHERE source = $1 AND id <> $2 AND retired_at IS NULL',
      [source, id, now],
    );
  }

  async get(id: string): Promise<StoredCertificate | undefined> {
    const { rows } = await this.db.control.query<Row>(`SELECT ${COLUMNS} FROM tls_certificates WHERE id = $1`, [id]);
    return rows[0] && fromRow(rows[0]);
  }

  /** Certificates in service, soonest renewal first. */
  async list(): Promise<StoredCertificate[]> {
    const { rows } = await this.db.control.query<Row>(
      `SELECT ${COLUMNS} FROM tls_certificates WHERE retired_at IS NULL ORDER BY greatest(renew_after, next_attempt_at), id`,
    );
    return rows.map(fromRow);
  }

  /** Ids of certificates due at `now`: renewal time reached and no failure backoff pending. */
  async due(now: Date): Promise<string[]> {
    const { rows } = await this.db.control.query<{ id: string }>(
      `SELECT id FROM tls_certificates
        WHERE retired_at IS NULL AND renew_after <= $1 AND (next_attempt_at IS NULL OR next_attempt_at <= $1)
        ORDER BY renew_after`,
      [now],
    );
    return rows.map((r) => r.id);
  }

  /** Stores a newly issued pair and clears the failure bookkeeping. */
  async saveIssued(id: string, pair: CertificatePair, info: CertificateInfo, renewAfter: Date, now: Date): Promise<void> {
    const { wrapped, sealed } = await this.seal(Buffer.from(pair.key), keyAad(id));
    await this.db.control.query(
      `UPDATE tls_certificates SET issuer = $2, serial = $3, not_before = $4, not_after = $5, cert_pem = $6,
         key_wrapped_dek = $7, key_sealed = $8, renew_after = $9, next_attempt_at = NULL, last_attempt_at = $10,
         last_error = NULL, failures = 0, updated_at = $10
       WHERE id = $1`,
      [id, new X509Certificate(pair.cert).issuer.replace(/\n/g, ', '), info.serial, info.notBefore, info.notAfter, pair.cert,
        wrapped, sealed, renewAfter, now],
    );
  }

  async saveFailure(id: string, failure: { at: Date; error: string; failures: number; nextAttemptAt: Date }): Promise<void> {
    await this.db.control.query(
      `UPDATE tls_certificates SET last_attempt_at = $2, last_error = $3, failures = $4, next_attempt_at = $5, updated_at = $2
       WHERE id = $1`,
      [id, failure.at, failure.error, failure.failures, failure.nextAttemptAt],
    );
  }

  /** The certificate with its private key opened, or undefined while none was issued. */
  async pair(id: string): Promise<(CertificatePair & { serial: string }) | undefined> {
    const { rows } = await this.db.control.query<{ cert_pem: string | null; serial: string; key_wrapped_dek: string; key_sealed: Buffer }>(
      'SELECT cert_pem, serial, key_wrapped_dek, key_sealed FROM tls_certificates WHERE id = $1',
      [id],
    );
    const row = rows[0];
    if (!row?.cert_pem) return undefined;
    const key = await this.open(row.key_wrapped_dek, row.key_sealed, keyAad(id));
    return { cert: row.cert_pem, key: key.toString(), serial: row.serial };
  }

  /** The ACME account key for a directory, if one was stored. */
  async accountKey(directoryUrl: string): Promise<Buffer | undefined> {
    const { rows } = await this.db.control.query<{ key_wrapped_dek: string; key_sealed: Buffer }>(
      'SELECT key_wrapped_dek, key_sealed FROM acme_accounts WHERE directory_url = $1',
      [directoryUrl],
    );
    return rows[0] && this.open(rows[0].key_wrapped_dek, rows[0].key_sealed, accountAad(directoryUrl));
  }

  /** Stores `key` unless the directory has one already; returns the one stored. */
  async saveAccountKey(directoryUrl: string, key: Buffer): Promise<Buffer> {
    const { wrapped, sealed } = await this.seal(key, accountAad(directoryUrl));
    const inserted = await this.db.control.query(
      `INSERT INTO acme_accounts (directory_url, key_wrapped_dek, key_sealed) VALUES ($1, $2, $3)
       ON CONFLICT (directory_url) DO NOTHING`,
      [directoryUrl, wrapped, sealed],
    );
    return inserted.rowCount ? key : (await this.accountKey(directoryUrl))!;
  }

  private async seal(plaintext: Buffer, aad: string): Promise<{ wrapped: string; sealed: Buffer }> {
    await this.kms.ensureKey(PLATFORM_KEY);
    const dataKey = await this.kms.generateDataKey(PLATFORM_KEY);
    try {
      return { wrapped: dataKey.wrapped, sealed: aeadSeal(dataKey.plaintext, plaintext, aad) };
    } finally {
      dataKey.plaintext.fill(0);
    }
  }

  private async open(wrapped: string, sealed: Buffer, aad: string): Promise<Buffer> {
    const dataKey = await this.kms.unwrap(PLATFORM_KEY, wrapped); // a copy: the cache keeps its own
    try {
      return aeadOpen(dataKey, sealed, aad);
    } finally {
      dataKey.fill(0);
    }
  }
}

const keyAad = (id: string) => `tls_certificates:${id}:key_sealed`;
const accountAad = (directoryUrl: string) => `acme_accounts:${directoryUrl}:key_sealed`;

function fromRow(row: Row): StoredCertificate {
  return {
    id: row.id,
    source: row.source,
    domains: row.domains,
    issuer: row.issuer,
    serial: row.serial,
    notBefore: row.not_before,
    notAfter: row.not_after,
    certPem: row.cert_pem,
    renewAfter: row.renew_after,
    nextAttemptAt: row.next_attempt_at,
    lastAttemptAt: row.last_attempt_at,
    lastError: row.last_error,
    failures: row.failures,
  };
}
