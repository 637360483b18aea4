import { Inject, Injectable } from '@nestjs/common';
import { AuditService } from '@coffer/audit';
import { JobPayloads, JobProcessor, Processes } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { OrgRegistry } from '@coffer/tenancy';

@Injectable()
@Processes('audit-checkpoint')
export class AuditCheckpointProcessor implements JobProcessor<'audit-checkpoint'> {
  constructor(
    private readonly audit: AuditService,
    private readonly orgs: OrgRegistry,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  async process({ orgId }: JobPayloads['audit-checkpoint']) {
    const org = orgId ? await this.orgs.resolveById(orgId) : undefined;
    if (orgId && !org) return { signed: null };
    const signed = await this.audit.checkpoint(this.audit.chain(org));
    if (signed) this.logger.info({ org: org?.slug ?? 'control', seq: signed }, 'audit checkpoint signed');
    return { signed: signed ?? null };
  }
}
