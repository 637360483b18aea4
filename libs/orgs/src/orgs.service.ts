import { Injectable } from '@nestjs/common';
import { AppError } from '@coffer/http';
import { UsersService } from '@coffer/users';
import { OrgProvisioner } from './org-provisioner.service';

export interface NewOrganization {
  slug: string;
  name: string;
  admin?: { email: string; displayName: string };
}

@Injectable()
export class OrgsService {
  constructor(
    private readonly provisioner: OrgProvisioner,
    private readonly users: UsersService,
  ) {}

  /**
   * Registers, provisions and activates an org, with its first admin if asked. An org is active
   * (reachable) only once all of it exists; calling this again for a slug that is still
   * provisioning resumes where the last attempt stopped.
   */
  async create(input: NewOrganization) {
    const { org, created } = await this.provisioner.register(input.slug, input.name);
    if (!created && org.status === 'active') {
      throw new AppError('organization_exists', `organization '${input.slug}' already exists`);
    }
    await this.provisioner.provision(org);
    const admin = input.admin ? await this.users.createAdminWithKey(org, input.admin) : undefined;
    const organization = await this.provisioner.activate(org);
    return { organization, admin };
  }
}
