import { Inject, Injectable } from '@nestjs/common';
import { audit, setAuditOrg } from '@coffer/audit';
import { JobPayloads, JobProcessor, Processes } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import { ApiKeysService } from '@coffer/users';
import { OrgRegistry } from '@coffer/tenancy';

@Injectable()
@Processes('expire-api-keys')
export class ExpireApiKeysProcessor implements JobProcessor<'expire-api-keys'> {
  constructor(
    private readonly orgs: OrgRegistry,
    private readonly apiKeys: ApiKeysService,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  async process({ orgId }: JobPayloads['expire-api-keys']) {
    const org = await this.orgs.resolveById(orgId);
    if (!org) return { expired: 0 };
    setAuditOrg(org);
    const expired = await this.apiKeys.markExpired(org);
    for (const id of expired) audit({ action: 'api_key.expired', target: { id } });
    if (expired.length) this.logger.info({ org: org.slug, count: expired.length }, 'api keys expired');
    return { expired: expired.length };
  }
}
