import { Inject, Injectable } from '@nestjs/common';
import { AuditDeliveryService } from '@coffer/audit';
import { JobPayloads, JobProcessor, Processes } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { OrgRegistry } from '@coffer/tenancy';

@Injectable()
@Processes('audit-delivery')
export class AuditDeliveryProcessor implements JobProcessor<'audit-delivery'> {
  constructor(
    private readonly delivery: AuditDeliveryService,
    private readonly orgs: OrgRegistry,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  async process({ orgId }: JobPayloads['audit-delivery']) {
    const org = await this.orgs.resolveById(orgId);
    if (!org) return { batches: 0 };
    // Outside the job's transaction: each batch's progress commits on its own (deliver()).
    const batches = await this.delivery.deliver(org);
    if (batches) this.logger.info({ org: org.slug, batches }, 'audit entries delivered');
    return { batches };
  }
}
