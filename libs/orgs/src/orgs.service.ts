import { Injectable } from '@nestjs/common';
import { auditDetails, AuditService } from '@coffer/audit';
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
    private readonly audit: AuditService,
  ) {}

  /**
   * Registers, provisions and activates an org, with its first admin if asked. An org is active
   * (reachable) only once all of it exists; calling this again for a slug that is still
   * provisioning resumes where the last attempt stopped. Creations of one slug run one at a
   * time (the others then find it active: organization_exists). The control plane's entry
   * names the slug and name asked for; the first admin and their key are entries of the org's
   * own chain, committed with them.
   */
  async create(input: NewOrganization) {
    auditDetails({ slug: input.slug, name: input.name });
    return this.provisioner.exclusively(input.slug, async () => {
      const { org, created } = await this.provisioner.register(input.slug, input.name);
      if (!created && org.status === 'active') {
        throw new AppError('organization_exists', `organization '${input.slug}' already exists`);
      }
      await this.provisioner.provision(org);
      const admin = input.admin ? await this.users.createAdminWithKey(org, input.admin) : undefined;
      if (admin) {
        await this.audit.appendTo(this.audit.chain(org), [
          { action: 'user.created', target: { id: admin.user.id }, role: admin.user.role, firstAdmin: true },
          { action: 'api_key.created', target: { id: admin.apiKey.id, userId: admin.user.id }, name: admin.apiKey.name },
        ]);
      }
      const organization = await this.provisioner.activate(org);
      return { organization, admin };
    });
  }
}
