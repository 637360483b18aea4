import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { JobsService } from '@coffer/jobs';
import { KeyRotationRepository, RETIRE_GRACE_MS } from '@coffer/keys';
import { LOGGER, Logger } from '@coffer/logging';
import { startSweep } from './sweep';

/**
 * Gives new orgs a rotation schedule, enqueues a rotation for each key past its
 * `next_rotation_at`, and a rewrap wherever one is unfinished (or old versions await retirement).
 */
@Injectable()
export class KeyRotationSchedule implements OnApplicationBootstrap {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly registry: SchedulerRegistry,
    private readonly keys: KeyRotationRepository,
    private readonly jobs: JobsService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  onApplicationBootstrap(): void {
    startSweep(this.registry, this.logger, 'key-rotation', this.config.KEY_ROTATION_CRON, () => this.tick());
  }

  async tick(now = new Date()): Promise<{ rotations: number; rewraps: number }> {
    await this.keys.scheduleUnscheduled(this.config.KEY_ROTATION_DAYS);
    const due = await this.keys.due(now);
    for (const key of due) await this.jobs.enqueue('rotate-key', { orgId: key.orgId, fromVersion: key.latestVersion });
    const rewraps = await this.keys.rewrapDue(now, this.config.KEY_RETIRE_OLD_VERSIONS, RETIRE_GRACE_MS);
    for (const key of rewraps) await this.jobs.enqueue('rewrap-keys', { orgId: key.orgId, version: key.latestVersion });
    return { rotations: due.length, rewraps: rewraps.length };
  }
}
