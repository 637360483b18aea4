import { Inject, Injectable } from '@nestjs/common';
import { audit, AUDIT_LIMITS, AuditService } from '@coffer/audit';
import { JobContext, JobPayloads, JobProcessor, JobsService, Processes } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { ApiKeysService } from '@coffer/users';
import { OrgRegistry } from '@coffer/tenancy';

/**
 * Keys expired per unit, each committed with its entries (AuditService.commitUnit): well below
 * the audit limit of entries per unit, so that no number of due keys can wedge the job.
 */
export const EXPIRE_BATCH_SIZE = 200;
if (EXPIRE_BATCH_SIZE >= AUDIT_LIMITS.entries) throw new Error('EXPIRE_BATCH_SIZE must stay below the audit entry limit');

@Injectable()
@Processes('expire-api-keys')
export class ExpireApiKeysProcessor implements JobProcessor<'expire-api-keys'> {
  constructor(
    private readonly apiKeys: ApiKeysService,
    private readonly audit: AuditService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  async process(_payload: JobPayloads['expire-api-keys'], { org }: JobContext<'expire-api-keys'>) {
    let expired = 0;
    for (;;) {
      const batch = await this.audit.commitUnit(async () => {
        const ids = await this.apiKeys.markExpired(org, EXPIRE_BATCH_SIZE);
        for (const id of ids) audit({ action: 'api_key.expired', target: { id } });
        return ids;
      });
      expired += batch.length;
      if (batch.length < EXPIRE_BATCH_SIZE) break;
    }
    if (expired) this.logger.info({ org: org.slug, count: expired }, 'api keys expired');
    return { expired };
  }
}

@Injectable()
@Processes('find-expired-api-keys')
export class FindExpiredApiKeysProcessor implements JobProcessor<'find-expired-api-keys'> {
  constructor(
    private readonly orgs: OrgRegistry,
    private readonly apiKeys: ApiKeysService,
    private readonly jobs: JobsService,
  ) {}

  async process() {
    let enqueued = 0;
    for (const org of await this.orgs.listActive()) {
      if ((await this.apiKeys.countDueToExpire(org)) > 0) {
        await this.jobs.enqueue('expire-api-keys', { orgId: org.id });
        enqueued++;
      }
    }
    return { enqueued };
  }
}
