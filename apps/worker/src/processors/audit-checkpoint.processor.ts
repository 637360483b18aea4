import { Inject, Injectable } from '@nestjs/common';
import { AuditService } from '@coffer/audit';
import { JobContext, JobPayloads, JobProcessor, Processes } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';

@Injectable()
@Processes('audit-checkpoint')
export class AuditCheckpointProcessor implements JobProcessor<'audit-checkpoint'> {
  constructor(
    private readonly audit: AuditService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  async process(_payload: JobPayloads['audit-checkpoint'], { org }: JobContext<'audit-checkpoint'>) {
    const signed = await this.audit.checkpoint(this.audit.chain(org));
    if (signed) this.logger.info({ org: org?.slug ?? 'control', seq: signed }, 'audit checkpoint signed');
    return { signed: signed ?? null };
  }
}
