import { Injectable } from '@nestjs/common';
import { AppError } from '@coffer/http';
import { JobProcessor, Processes } from '@coffer/jobs';
import { OrgProvisioner, ProvisionOutcome } from '@coffer/orgs';

/**
 * The provisioner's one job. An AppError (the KMS unreachable, say) is the outcome the waiting
 * request answers with; anything else fails the job, its cause in this process's log only.
 */
@Injectable()
@Processes('provision-org')
export class ProvisionOrgProcessor implements JobProcessor<'provision-org'> {
  constructor(private readonly provisioner: OrgProvisioner) {}

  async process({ slug, name }: { slug: string; name: string }): Promise<ProvisionOutcome> {
    try {
      const { org, created } = await this.provisioner.create(slug, name);
      return { orgId: org.id, created };
    } catch (error) {
      if (error instanceof AppError) return { error: { code: error.code, message: error.message } };
      throw error;
    }
  }
}
