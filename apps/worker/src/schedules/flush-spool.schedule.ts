import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { JobsService } from '@coffer/jobs';
import { KMS, KmsProvider } from '@coffer/kms';
import { LOGGER, Logger } from '@coffer/logging';
import { KmsProbe, SpoolRepository } from '@coffer/spool';
import { OrgRegistry } from '@coffer/tenancy';
import { startSweep } from './sweep';

/**
 * Finds orgs with queued writes (in PostgreSQL, so a restart forgets nothing) and, once the KMS
 * answers again (a health probe that backs off while it does not), enqueues one flush per org.
 */
@Injectable()
export class FlushSpoolSchedule implements OnApplicationBootstrap {
  private readonly probe: KmsProbe;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly registry: SchedulerRegistry,
    private readonly orgs: OrgRegistry,
    private readonly spool: SpoolRepository,
    private readonly jobs: JobsService,
    @Inject(KMS) kms: KmsProvider,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {
    this.probe = new KmsProbe(kms);
  }

  onApplicationBootstrap(): void {
    startSweep(this.registry, this.logger, 'flush-spool', this.config.SPOOL_FLUSH_CRON, () => this.tick());
  }

  async tick(): Promise<number> {
    const due = [];
    for (const org of await this.orgs.listActive()) if ((await this.spool.countPending(org)) > 0) due.push(org);
    if (!due.length || !(await this.probe.up())) return 0;
    for (const org of due) await this.jobs.enqueue('flush-spool', { orgId: org.id });
    return due.length;
  }
}
