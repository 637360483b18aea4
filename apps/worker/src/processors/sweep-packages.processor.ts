import { Inject, Injectable } from '@nestjs/common';
import { setAuditOrg } from '@coffer/audit';
import { JobPayloads, JobProcessor, Processes } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { PackagesService } from '@coffer/packages';
import { OrgRegistry } from '@coffer/tenancy';

@Injectable()
@Processes('sweep-packages')
export class SweepPackagesProcessor implements JobProcessor<'sweep-packages'> {
  constructor(
    private readonly orgs: OrgRegistry,
    private readonly packages: PackagesService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  async process({ orgId }: JobPayloads['sweep-packages']) {
    const org = await this.orgs.resolveById(orgId);
    if (!org) return { purged: 0 };
    setAuditOrg(org);
    const purged = await this.packages.sweep(org);
    if (purged) this.logger.info({ org: org.slug, count: purged }, 'package objects purged');
    return { purged };
  }
}
