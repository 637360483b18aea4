import { Inject, Injectable } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { KeyRotationService, OrgKeyState } from '@coffer/keys';
import { KMS, KmsProvider } from '@coffer/kms';
import { SpoolRepository } from '@coffer/spool';
import { STORAGE, StorageDriver } from '@coffer/storage';
import { servedCertificate } from '@coffer/tls';
import type { OrgRef } from '@coffer/tenancy';
import { EncryptionStatusRepository } from './encryption-status.repository';

/** The probes below cost a scan per sensitive column and KMS calls: reuse them this long. */
const PROBE_CACHE_MS = 2_000;

/**
 * The encryption status the encryption requirement asks for (docs/requirements.md §1: its four
 * keys, plus details), measured from live state: the sensitive columns are counted
 * (how many rows are sealed, how many still plaintext), the KMS is asked, the key's versions
 * and rewrap progress are read, the certificate is the one being served, and the transport is
 * the protocol the request itself arrived on. Nothing here is a constant.
 */
@Injectable()
export class EncryptionStatusService {
  private readonly cache = new Map<string, { at: number; probes: Promise<Probes>; refreshing?: boolean }>();

  constructor(
    private readonly repository: EncryptionStatusRepository,
    private readonly keys: KeyRotationService,
    @Inject(KMS) private readonly kms: KmsProvider,
    @Inject(STORAGE) private readonly storage: StorageDriver,
    private readonly moduleRef: ModuleRef,
    private readonly spool: SpoolRepository,
  ) {}

  /** `transit`: how the asking request arrived (`transitOf`), or what the CLI says of itself. */
  async status(org: OrgRef, transit: string) {
    const { columns, packages, serverSide, kms, key, schedule, pendingWrites, measuredAt } = await this.probes(org);
    const plaintext = columns.reduce((n, c) => n + c.plaintext, 0);
    const certificate = servedCertificate(this.moduleRef);
    return {
      // Every stored version sealed with AES-256-GCM under its own data key, wrapped by the KMS.
      storage_encryption: packages.kmsWrapped === packages.versions ? 'AES-256-KMS' : 'partial',
      transit_encryption: transit,
      key_rotation: { last_rotated: schedule.lastRotatedAt, next_rotation: schedule.nextRotationAt },
      db_encryption: plaintext === 0 ? 'active' : 'partial',
      details: {
        database: { algorithm: 'AES-256-GCM', blindIndex: 'HMAC-SHA256', columns },
        storage: {
          driver: this.storage.kind,
          format: 'coffer-package-v1: AES-256-GCM segments under a per-object data key',
          ...packages,
          serverSideEncryption: serverSide,
        },
        kms,
        key,
        // Writes accepted while the KMS was down: stored sealed to the spool key until flushed.
        pendingWrites,
        certificate: certificate ? { serial: certificate.serial, notAfter: certificate.notAfter, names: certificate.names } : null,
        measuredAt,
      },
    };
  }

  /**
   * Measured at most every PROBE_CACHE_MS per org. Once an org has a measurement, a stale one is
   * answered while the next is taken in the background (each answer says `measuredAt`), so only
   * an org's very first request waits for the probes.
   */
  private probes(org: OrgRef): Promise<Probes> {
    const hit = this.cache.get(org.id);
    if (hit && (Date.now() - hit.at < PROBE_CACHE_MS || hit.refreshing)) return hit.probes;
    const probes = this.measure(org);
    if (!hit) {
      this.cache.set(org.id, { at: Date.now(), probes });
      probes.catch(() => this.cache.delete(org.id));
      return probes;
    }
    hit.refreshing = true;
    probes.then(
      () => this.cache.set(org.id, { at: Date.now(), probes }),
      () => (hit.refreshing = false),
    );
    return hit.probes;
  }

  private async measure(org: OrgRef): Promise<Probes> {
    const columns = await this.repository.sealedColumns(org);
    const packages = await this.repository.packageVersions(org);
    const [health, key, serverSide] = await Promise.all([
      this.kms.health(),
      this.keys.describe(org).catch(() => null),
      this.storage.serverSideEncryption(),
    ]);
    const schedule = await this.keys.scheduleOf(org);
    const pendingWrites = await this.spool.summary(org);
    return {
      columns,
      packages,
      serverSide,
      kms: { provider: this.kms.kind, reachable: health.reachable, sealed: health.sealed },
      key,
      schedule,
      pendingWrites,
      measuredAt: new Date(),
    };
  }
}

/** `TLS-1.3` for a request that arrived over TLSv1.3; `none` over plain HTTP. */
export function transitOf(tlsProtocol: string | null | undefined): string {
  return tlsProtocol ? tlsProtocol.replace(/^TLSv/, 'TLS-') : 'none';
}

interface Probes {
  columns: { table: string; column: string; encrypted: number; plaintext: number }[];
  packages: { versions: number; kmsWrapped: number };
  serverSide: string | null;
  kms: { provider: string; reachable: boolean; sealed: boolean };
  key: Awaited<ReturnType<KeyRotationService['describe']>> | null;
  schedule: OrgKeyState;
  pendingWrites: { pending: number; failed: number; oldestPendingAt: Date | null };
  measuredAt: Date;
}
