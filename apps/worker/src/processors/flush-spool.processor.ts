import { Inject, Injectable } from '@nestjs/common';
import { JobContext, JobPayloads, JobProcessor, JobsService, Processes } from '@coffer/jobs';
import { KMS, KmsProvider } from '@coffer/kms';
import { PackageFlushService } from '@coffer/packages';
import { KmsProbe, SpoolRepository } from '@coffer/spool';
import { OrgRegistry } from '@coffer/tenancy';

@Injectable()
@Processes('flush-spool')
export class FlushSpoolProcessor implements JobProcessor<'flush-spool'> {
  constructor(private readonly flusher: PackageFlushService) {}

  process(_payload: JobPayloads['flush-spool'], { org }: JobContext<'flush-spool'>) {
    // Each write commits with its own audit entry on the org's chain (PackageFlushService).
    return this.flusher.flush(org);
  }
}

/**
 * Finds orgs with queued writes (in PostgreSQL, so a restart forgets nothing) and, once the KMS
 * answers again, enqueues one flush per org. The health probe is asked only when writes wait,
 * and backs off while the KMS does not answer; its state lives in this worker process.
 */
@Injectable()
@Processes('find-spool-flushes')
export class FindSpoolFlushesProcessor implements JobProcessor<'find-spool-flushes'> {
  private readonly probe: KmsProbe;

  constructor(
    private readonly orgs: OrgRegistry,
    private readonly spool: SpoolRepository,
    private readonly jobs: JobsService,
    @Inject(KMS) kms: KmsProvider,
  ) {
    this.probe = new KmsProbe(kms);
  }

  async process() {
    const due = [];
    for (const org of await this.orgs.listActive()) if ((await this.spool.countPending(org)) > 0) due.push(org);
    if (!due.length || !(await this.probe.up())) return { enqueued: 0 };
    for (const org of due) await this.jobs.enqueue('flush-spool', { orgId: org.id });
    return { enqueued: due.length };
  }
}
