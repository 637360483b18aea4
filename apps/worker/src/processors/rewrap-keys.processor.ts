import { Injectable } from '@nestjs/common';
import { setAuditOrg } from '@coffer/audit';
import { JobPayloads, JobProcessor, Processes } from '@coffer/jobs';
import { KeyRotationService } from '@coffer/keys';
import { OrgRegistry } from '@coffer/tenancy';

@Injectable()
@Processes('rewrap-keys')
export class RewrapKeysProcessor implements JobProcessor<'rewrap-keys'> {
  constructor(
    private readonly orgs: OrgRegistry,
    private readonly keys: KeyRotationService,
  ) {}

  async process({ orgId }: JobPayloads['rewrap-keys']) {
    const org = await this.orgs.resolveById(orgId);
    if (!org) return { rewrapped: 0 };
    setAuditOrg(org);
    return this.keys.rewrap(org);
  }
}
