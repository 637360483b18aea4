import { Injectable } from '@nestjs/common';
import { JobPayloads, JobProcessor, Processes } from '@coffer/jobs';
import { PackageFlushService } from '@coffer/packages';
import { OrgRegistry } from '@coffer/tenancy';

@Injectable()
@Processes('flush-spool')
export class FlushSpoolProcessor implements JobProcessor<'flush-spool'> {
  constructor(
    private readonly orgs: OrgRegistry,
    private readonly flusher: PackageFlushService,
  ) {}

  async process({ orgId }: JobPayloads['flush-spool']) {
    const org = await this.orgs.resolveById(orgId);
    if (!org) return { flushed: 0, failed: 0 };
    // Each write commits with its own audit entry on the org's chain (PackageFlushService).
    return this.flusher.flush(org);
  }
}
