import { Injectable } from '@nestjs/common';
import { setAuditOrg } from '@coffer/audit';
import { JobPayloads, JobProcessor, Processes } from '@coffer/jobs';
import { KeyRotationService } from '@coffer/keys';
import { OrgRegistry } from '@coffer/tenancy';

@Injectable()
@Processes('rotate-key')
export class RotateKeyProcessor implements JobProcessor<'rotate-key'> {
  constructor(
    private readonly orgs: OrgRegistry,
    private readonly keys: KeyRotationService,
  ) {}

  async process({ orgId, fromVersion }: JobPayloads['rotate-key']) {
    const org = await this.orgs.resolveById(orgId);
    if (!org) return { version: null };
    setAuditOrg(org);
    const rotated = await this.keys.rotate(org, 'scheduled', fromVersion);
    return { version: rotated?.version ?? null };
  }
}
