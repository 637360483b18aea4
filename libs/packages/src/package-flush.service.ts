import { Inject, Injectable } from '@nestjs/common';
import { audit, AuditService, setAuditOrg } from '@coffer/audit';
import { randomId } from '@coffer/crypto';
import { KMS, KmsProvider, orgKeyName, WrappedKey } from '@coffer/kms';
import { LOGGER, Logger } from '@coffer/logging';
import { PendingWrite, SpoolIntegrityError, SpoolRepository, SpoolService } from '@coffer/spool';
import type { OrgRef } from '@coffer/tenancy';
import { PackagesRepository } from './packages.repository';

const BATCH = 100;

export interface FlushResult {
  flushed: number;
  failed: number;
}

/**
 * Flushes an org's write spool once the KMS is back (libs/spool/README.md), in the order the
 * writes were accepted. Runs in the flush job's transaction scope, and commits each write as a
 * unit of its own inside it (AuditService.commitUnit): its version row, its queue row and its
 * audit entry in one transaction, so a crash anywhere loses nothing (the write is still
 * pending) and duplicates nothing (the row lock and the `pending` check make a second flush of
 * the same write a no-op; the KMS wrap a crash may repeat is harmless).
 */
@Injectable()
export class PackageFlushService {
  constructor(
    private readonly packages: PackagesRepository,
    private readonly pendingWrites: SpoolRepository,
    private readonly spool: SpoolService,
    @Inject(KMS) private readonly kms: KmsProvider,
    private readonly audit: AuditService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  /** Stops at the first write that cannot be flushed for want of the KMS (it keeps the order). */
  async flush(org: OrgRef): Promise<FlushResult> {
    setAuditOrg(org);
    const result: FlushResult = { flushed: 0, failed: 0 };
    let after = 0;
    for (;;) {
      const batch = await this.pendingWrites.due(org, after, BATCH);
      for (const write of batch) {
        after = write.seq;
        try {
          const outcome = await this.audit.commitUnit(() => this.flushOne(org, write));
          if (outcome !== 'skipped') result[outcome]++;
        } catch (error) {
          // The write's unit is rolled back (its row lock released); the attempt commits on its own.
          await this.pendingWrites.recordAttempt(org, write.id, (error as Error).message.slice(0, 500));
          this.logger.warn({ org: org.slug, pendingWrite: write.id, err: (error as Error).message }, 'spool flush stopped; the write stays queued');
          throw error;
        }
      }
      if (batch.length < BATCH) break;
    }
    if (result.flushed || result.failed) this.logger.info({ org: org.slug, ...result }, 'write spool flushed');
    return result;
  }

  /** One write, in the unit commitUnit() commits: visible with its audit entry, or not at all. */
  private async flushOne(org: OrgRef, write: PendingWrite): Promise<'flushed' | 'failed' | 'skipped'> {
    if (!(await this.pendingWrites.lockPending(org, write.id))) return 'skipped';
    const stored = await this.packages.pendingVersion(org, write.target);
    let wrapped: WrappedKey;
    try {
      if (!stored) throw new SpoolIntegrityError();
      const dek = await this.spool.open(org, stored.id, stored.wrappedDek);
      try {
        wrapped = await this.kms.wrap(orgKeyName(org.id), dek);
      } finally {
        dek.fill(0);
      }
    } catch (error) {
      if (!(error instanceof SpoolIntegrityError)) throw error;
      // Fail closed: a DEK that does not authenticate is never used; the version never shows.
      await this.pendingWrites.markFailed(org, write.id, error.message);
      await this.packages.abandonPending(org, write.target);
      audit({ action: 'package.version_flush_failed', outcome: 'failure', target: { id: write.target, pendingWriteId: write.id }, error: error.code });
      this.logger.error({ org: org.slug, pendingWrite: write.id, version: write.target }, 'queued package version does not authenticate; not flushed');
      return 'failed';
    }
    const version = await this.packages.commitPending(org, stored.id, stored.wrappedDek, wrapped, randomId(16));
    if (!version) throw new Error(`queued version ${stored.id} changed under the flush`);
    await this.pendingWrites.markFlushed(org, write.id);
    audit({
      action: 'package.version_flushed',
      target: { id: version.id, package: version.package, version: version.version, pendingWriteId: write.id },
      kmsKeyVersion: wrapped.keyVersion,
    });
    return 'flushed';
  }
}
