import { Inject, Injectable } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { DatabaseService, quoteIdent } from '@coffer/database';
import { SEALED_COLUMNS } from '@coffer/fields';
import { KeyRotationService, OrgKeyState } from '@coffer/keys';
import { KMS, KmsProvider } from '@coffer/kms';
import type { OrgRef } from '@coffer/orgs';
import { servedCertificate } from '@coffer/tls';

/** The probes below cost a scan per sensitive column and KMS calls: reuse them this long. */
const PROBE_CACHE_MS = 2_000;

/**
 * Seed 000's encryption status, measured from live state: the sensitive columns are counted
 * (how many rows are sealed, how many still plaintext), the KMS is asked, the key's versions
 * and rewrap progress are read, the certificate is the one being served, and the transport is
 * the protocol the request itself arrived on. Nothing here is a constant.
 */
@Injectable()
export class EncryptionStatusService {
  private readonly cache = new Map<string, { at: number; probes: Promise<Probes> }>();

  constructor(
    private readonly db: DatabaseService,
    private readonly keys: KeyRotationService,
    @Inject(KMS) private readonly kms: KmsProvider,
    private readonly moduleRef: ModuleRef,
  ) {}

  /** `tlsProtocol`: the request's negotiated protocol (`TLSv1.3`), undefined over plain HTTP. */
  async status(org: OrgRef, tlsProtocol: string | undefined) {
    const { columns, kms, key, schedule, measuredAt } = await this.probes(org);
    const plaintext = columns.reduce((n, c) => n + c.plaintext, 0);
    const certificate = servedCertificate(this.moduleRef);
    return {
      storage_encryption: 'AES-256-KMS',
      transit_encryption: tlsProtocol ? tlsProtocol.replace(/^TLSv/, 'TLS-') : 'none',
      key_rotation: { last_rotated: schedule.lastRotatedAt, next_rotation: schedule.nextRotationAt },
      db_encryption: plaintext === 0 ? 'active' : 'partial',
      details: {
        database: { algorithm: 'AES-256-GCM', blindIndex: 'HMAC-SHA256', columns },
        kms,
        key,
        certificate: certificate ? { serial: certificate.serial, notAfter: certificate.notAfter, names: certificate.names } : null,
        measuredAt,
      },
    };
  }

  private probes(org: OrgRef): Promise<Probes> {
    const hit = this.cache.get(org.id);
    if (hit && Date.now() - hit.at < PROBE_CACHE_MS) return hit.probes;
    const probes = this.measure(org);
    this.cache.set(org.id, { at: Date.now(), probes });
    probes.catch(() => this.cache.delete(org.id));
    return probes;
  }

  private async measure(org: OrgRef): Promise<Probes> {
    const pool = this.db.org(org.databaseName, org.databaseServer);
    const columns = await Promise.all(
      SEALED_COLUMNS.map(async ({ table, column, legacy }) => {
        const { rows } = await pool.query<{ total: string; plaintext: string }>(
          `SELECT count(*) AS total, count(*) FILTER (WHERE ${legacy}) AS plaintext FROM ${quoteIdent(table)}`,
        );
        const [total, plaintext] = [Number(rows[0].total), Number(rows[0].plaintext)];
        return { table, column, encrypted: total - plaintext, plaintext };
      }),
    );
    const [health, key] = await Promise.all([this.kms.health(), this.keys.describe(org).catch(() => null)]);
    const schedule = await this.keys.scheduleOf(org);
    return {
      columns,
      kms: { provider: this.kms.kind, reachable: health.reachable, sealed: health.sealed },
      key,
      schedule,
      measuredAt: new Date(),
    };
  }

}

interface Probes {
  columns: { table: string; column: string; encrypted: number; plaintext: number }[];
  kms: { provider: string; reachable: boolean; sealed: boolean };
  key: Awaited<ReturnType<KeyRotationService['describe']>> | null;
  schedule: OrgKeyState;
  measuredAt: Date;
}
