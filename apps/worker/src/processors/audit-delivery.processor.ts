import { Inject, Injectable } from '@nestjs/common';
import { AuditDeliveryService } from '@coffer/audit';
import { JobContext, JobPayloads, JobProcessor, JobsService, Processes } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { OrgRegistry } from '@coffer/tenancy';

@Injectable()
@Processes('audit-delivery')
export class AuditDeliveryProcessor implements JobProcessor<'audit-delivery'> {
  constructor(
    private readonly delivery: AuditDeliveryService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  async process(_payload: JobPayloads['audit-delivery'], { org }: JobContext<'audit-delivery'>) {
    // Outside the job's transaction: each batch's progress commits on its own (deliver()), so a
    // delivery cut short resumes where it stopped.
    const batches = await this.delivery.deliver(org);
    if (batches) this.logger.info({ org: org.slug, batches }, 'audit entries delivered');
    return { batches };
  }
}

/** The job finds what is new for each org that has a destination. */
@Injectable()
@Processes('find-audit-deliveries')
export class FindAuditDeliveriesProcessor implements JobProcessor<'find-audit-deliveries'> {
  constructor(
    private readonly orgs: OrgRegistry,
    private readonly delivery: AuditDeliveryService,
    private readonly jobs: JobsService,
  ) {}

  async process() {
    let enqueued = 0;
    for (const org of await this.orgs.listActive()) {
      if (await this.delivery.hasDestination(org)) {
        await this.jobs.enqueue('audit-delivery', { orgId: org.id });
        enqueued++;
      }
    }
    return { enqueued };
  }
}
