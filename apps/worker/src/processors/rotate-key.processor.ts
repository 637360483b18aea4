import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { JobContext, JobPayloads, JobProcessor, JobsService, Processes } from '@coffer/jobs';
import { KeyRotationRepository, KeyRotationService, RETIRE_GRACE_MS } from '@coffer/keys';

@Injectable()
@Processes('rotate-key')
export class RotateKeyProcessor implements JobProcessor<'rotate-key'> {
  constructor(private readonly keys: KeyRotationService) {}

  async process({ fromVersion }: JobPayloads['rotate-key'], { org }: JobContext<'rotate-key'>) {
    const rotated = await this.keys.rotate(org, 'scheduled', fromVersion);
    return { version: rotated?.version ?? null };
  }
}

/**
 * Gives new orgs a rotation date, enqueues a rotation for each key past its `next_rotation_at`
 * (rotated once per due date: the job's `fromVersion` guard), and a rewrap wherever one is
 * unfinished (or old versions await retirement).
 */
@Injectable()
@Processes('find-key-rotations')
export class FindKeyRotationsProcessor implements JobProcessor<'find-key-rotations'> {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly keys: KeyRotationRepository,
    private readonly jobs: JobsService,
  ) {}

  async process() {
    const now = new Date();
    await this.keys.scheduleUnscheduled(this.config.KEY_ROTATION_DAYS);
    const due = await this.keys.due(now);
    for (const key of due) await this.jobs.enqueue('rotate-key', { orgId: key.orgId, fromVersion: key.latestVersion });
    const rewraps = await this.keys.rewrapDue(now, this.config.KEY_RETIRE_OLD_VERSIONS, RETIRE_GRACE_MS);
    for (const key of rewraps) await this.jobs.enqueue('rewrap-keys', { orgId: key.orgId, version: key.latestVersion });
    return { rotations: due.length, rewraps: rewraps.length };
  }
}
