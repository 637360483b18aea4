import { Inject, Injectable } from '@nestjs/common';
import { audit } from '@coffer/audit';
import { JobContext, JobPayloads, JobProcessor, JobsService, Processes } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { ApiKeysService } from '@coffer/users';
import { OrgRegistry } from '@coffer/tenancy';

@Injectable()
@Processes('expire-api-keys')
export class ExpireApiKeysProcessor implements JobProcessor<'expire-api-keys'> {
  constructor(
    private readonly apiKeys: ApiKeysService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  async process(_payload: JobPayloads['expire-api-keys'], { org }: JobContext<'expire-api-keys'>) {
    const expired = await this.apiKeys.markExpired(org);
    for (const id of expired) audit({ action: 'api_key.expired', target: { id } });
    if (expired.length) this.logger.info({ org: org.slug, count: expired.length }, 'api keys expired');
    return { expired: expired.length };
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
