import { Inject, Injectable } from '@nestjs/common';
import { audit } from '@coffer/audit';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { JobsService } from '@coffer/jobs';
import { KMS, KmsProvider, orgKeyName } from '@coffer/kms';
import { LOGGER, Logger } from '@coffer/logging';
import type { OrgRef } from '@coffer/tenancy';
import { KeyRotationRepository, OrgKeyState } from './key-rotation.repository';
import { WrappedKeys } from './wrapped-keys';

/** How long after a rotation older versions may be retired: the longest a write may hold a data key. */
export const RETIRE_GRACE_MS = 24 * 3600 * 1000;

export interface RotationResult {
  keyName: string;
  previousVersion: number;
  version: number;
  rotatedAt: Date;
  nextRotationAt: Date;
}

export interface RewrapResult {
  version: number;
  rewrapped: number;
  remaining: number;
  retiredBelow?: number;
}

/**
 * The versions of each org's key (libs/keys/README.md): a rotation adds a KMS key version that
 * new writes use; the rewrap job then moves every stored wrapped data key (every WrappedKeys
 * holder) to it, without ever re-encrypting data, and may then retire the older versions.
 * Every rotation, rewrap and retirement is audited in the org's log.
 */
@Injectable()
export class KeyRotationService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly repository: KeyRotationRepository,
    private readonly wrappedKeys: WrappedKeys,
    @Inject(KMS) private readonly kms: KmsProvider,
    private readonly jobs: JobsService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  /**
   * Adds a version to the org's key, inside the caller's unit of work (the schedule row stays
   * locked until commit, so concurrent rotations queue). With `onlyFrom`, rotates only if the
   * latest version is still that one: a scheduled job that runs twice rotates once.
   */
  async rotate(org: OrgRef, reason: 'scheduled' | 'manual', onlyFrom?: number): Promise<RotationResult | undefined> {
    const keyName = orgKeyName(org.id);
    await this.kms.ensureKey(keyName);
    await this.repository.ensureScheduled(org.id, this.config.KEY_ROTATION_DAYS);
    const state = await this.repository.lock(org.id);
    if (onlyFrom !== undefined && state.latestVersion !== onlyFrom) return undefined;
    const previousVersion = (await this.kms.keyInfo(keyName)).latestVersion;
    const version = await this.kms.rotate(keyName);
    const rotatedAt = new Date();
    await this.repository.recordRotation(org.id, version, rotatedAt, this.config.KEY_ROTATION_DAYS);
    audit({ action: 'kms.key.rotated', target: { keyName }, previousVersion, version, reason });
    await this.jobs.enqueue('rewrap-keys', { orgId: org.id, version });
    this.logger.info({ org: org.slug, previousVersion, version, reason }, 'key rotated');
    const nextRotationAt = new Date(rotatedAt.getTime() + this.config.KEY_ROTATION_DAYS * 86_400_000);
    return { keyName, previousVersion, version, rotatedAt, nextRotationAt };
  }

  /**
   * Moves every stored data key of the org to the key's latest version, a batch at a time, each
   * swap committed on its own (progress survives a crash; a rerun picks up what is left). The
   * plaintext data key never leaves the KMS. Then, if configured and the grace has passed,
   * retires the older versions.
   */
  async rewrap(org: OrgRef): Promise<RewrapResult> {
    const keyName = orgKeyName(org.id);
    await this.kms.ensureKey(keyName);
    const info = await this.kms.keyInfo(keyName);
    const version = info.latestVersion;
    let rewrapped = 0;
    for (;;) {
      const batch = await this.wrappedKeys.olderThan(org, version, this.config.KEY_REWRAP_BATCH_SIZE);
      let moved = 0;
      for (const key of batch) {
        const { wrapped } = await this.kms.rewrap(keyName, key.wrapped);
        if (await this.wrappedKeys.replace(org, key, wrapped)) moved++;
      }
      rewrapped += moved;
      if (batch.length < this.config.KEY_REWRAP_BATCH_SIZE || moved === 0) break;
    }
    const remaining = await this.remaining(org, version);
    await this.repository.recordRewrapProgress(org.id, remaining);
    const result: RewrapResult = { version, rewrapped, remaining };
    if (rewrapped) audit({ action: 'kms.keys.rewrapped', target: { keyName }, version, rewrapped, remaining });
    if (remaining === 0 && this.config.KEY_RETIRE_OLD_VERSIONS && info.minDecryptionVersion < version) {
      const state = await this.repository.state(org.id);
      if (state?.lastRotatedAt && Date.now() - state.lastRotatedAt.getTime() >= RETIRE_GRACE_MS) {
        await this.kms.setMinDecryptionVersion(keyName, version);
        await this.repository.recordRetired(org.id, version);
        audit({ action: 'kms.key.old_versions_retired', target: { keyName }, minDecryptionVersion: version, previous: info.minDecryptionVersion });
        result.retiredBelow = version;
      }
    }
    this.logger.info({ org: org.slug, version, rewrapped, remaining }, 'data keys rewrapped');
    return result;
  }

  /** The org's rotation schedule, begun on first use: the first rotation is due a period after provisioning. */
  async scheduleOf(org: OrgRef): Promise<OrgKeyState> {
    await this.repository.ensureScheduled(org.id, this.config.KEY_ROTATION_DAYS, org.provisionedAt ?? undefined);
    return (await this.repository.state(org.id))!;
  }

  /** What an admin or security officer sees of the org's key. */
  async describe(org: OrgRef) {
    const keyName = orgKeyName(org.id);
    await this.kms.ensureKey(keyName);
    const [info, state, counts] = await Promise.all([this.kms.keyInfo(keyName), this.scheduleOf(org), this.wrappedKeys.countByVersion(org)]);
    const remaining = [...counts].reduce((sum, [v, n]) => sum + (v < info.latestVersion ? n : 0), 0);
    return {
      keyName,
      provider: this.kms.kind,
      latestVersion: info.latestVersion,
      minDecryptionVersion: info.minDecryptionVersion,
      lastRotatedAt: state.lastRotatedAt,
      nextRotationAt: state.nextRotationAt,
      rotationPeriodDays: this.config.KEY_ROTATION_DAYS,
      versions: info.versions.map((v) => ({ version: v.version, createdAt: v.createdAt, wrappedDataKeys: counts.get(v.version) ?? 0 })),
      rewrap: { remaining, completedAt: remaining === 0 ? state.rewrapCompletedAt : null },
    };
  }

  private async remaining(org: OrgRef, latest: number): Promise<number> {
    const counts = await this.wrappedKeys.countByVersion(org);
    return [...counts].reduce((sum, [v, n]) => sum + (v < latest ? n : 0), 0);
  }
}
