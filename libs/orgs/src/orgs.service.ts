import { Inject, Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { auditDetails, AuditService, currentAuditScope } from '@coffer/audit';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { OutsideTransaction } from '@coffer/database';
import { AppError, ErrorCode } from '@coffer/http';
import { JobsService } from '@coffer/jobs';
import { OrgRef, OrgRegistry, publicOrg } from '@coffer/tenancy';
import { UsersService } from '@coffer/users';

export interface NewOrganization {
  slug: string;
  name: string;
  admin?: { email: string; displayName: string };
}

/** What the provisioner's `provision-org` job returns: the org, or the error to answer with. */
export type ProvisionOutcome = { orgId: string; created: boolean } | { error: { code: ErrorCode; message: string } };

export type OrgCreation =
  | { pending: false; organization: OrgRef; admin?: NonNullable<Awaited<ReturnType<UsersService['createFirstAdmin']>>> }
  | { pending: true; organization: Pick<OrgRef, 'slug' | 'name' | 'status'> };

/**
 * Org creation as the API and the CLI ask for it, with the app role only: the provisioner (the
 * one process holding the owner's credentials) does the privileged part from its queue.
 */
@Injectable()
export class OrgsService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly jobs: JobsService,
    private readonly registry: OrgRegistry,
    private readonly users: UsersService,
    private readonly audit: AuditService,
  ) {}

  /**
   * Asks the provisioner for the org and waits up to ORG_PROVISION_WAIT_MS: then the org is
   * active, and its first admin and their key are created if asked (entries of the org's own
   * chain, committed with them). If it takes longer, `pending`: the org becomes active by
   * itself, and the same request repeated then only adds the first admin. A slug still
   * provisioning is resumed. Of concurrent creations of one slug, the provisioner creates the org
   * for one; the others find it existing (organization_exists), unless it has no user yet and
   * they bring its first admin (one of them gets to add it).
   */
  async create(input: NewOrganization): Promise<OrgCreation> {
    auditDetails({ slug: input.slug, name: input.name });
    const exists = () => new AppError('organization_exists', `organization '${input.slug}' already exists`);
    const provisioned = await this.provisioned(input);
    if (provisioned.pending) return provisioned;
    const { organization: org, existed } = provisioned;
    if (!input.admin) {
      if (existed) throw exists();
      return { pending: false, organization: org };
    }
    const admin = await this.users.createFirstAdmin(org, input.admin);
    // An org that has a user already (another creation's first admin) gets no second one.
    if (!admin) throw exists();
    await this.audit.appendTo(this.audit.chain(org), [
      { action: 'user.created', target: { id: admin.user.id }, role: admin.user.role, firstAdmin: true },
      { action: 'api_key.created', target: { id: admin.apiKey.id, userId: admin.user.id }, name: admin.apiKey.name },
    ]);
    return { pending: false, organization: org, admin };
  }

  /**
   * The org, active: found so, or provisioned now by the provisioner; or still pending after
   * ORG_PROVISION_WAIT_MS. Outside the request's transaction: the wait must hold no connection
   * of the app role's budget (a creation's unit opens its connections when it writes).
   */
  @OutsideTransaction()
  private async provisioned(input: NewOrganization): Promise<Extract<OrgCreation, { pending: true }> | { pending: false; organization: OrgRef; existed: boolean }> {
    const org = await this.registry.registration(input.slug);
    if (org?.status === 'active') return { pending: false, organization: org, existed: true };
    const requestId = currentAuditScope()?.source.requestId ?? randomUUID();
    const run = await this.jobs.enqueueAndWait('provision-org', { slug: input.slug, name: input.name, requestId }, this.config.ORG_PROVISION_WAIT_MS);
    if (!run.finished) {
      const registered = await this.registry.registration(input.slug);
      return { pending: true, organization: registered ?? { slug: input.slug, name: input.name, status: 'provisioning' } };
    }
    const outcome = run.result as ProvisionOutcome;
    if ('error' in outcome) throw new AppError(outcome.error.code, outcome.error.message);
    return { pending: false, organization: (await this.registry.resolveById(outcome.orgId))!, existed: !outcome.created };
  }

  /**
   * A creation's progress: the registration, whatever its status, or `provisioning` while the
   * provisioner has the request queued and not yet registered it.
   */
  async status(slug: string): Promise<ReturnType<typeof publicOrg> | { slug: string; status: 'provisioning' }> {
    const org = await this.registry.registration(slug);
    if (org) return publicOrg(org);
    if ((await this.jobs.pending('provision-org')).some((job) => job.slug === slug)) return { slug, status: 'provisioning' };
    throw new AppError('organization_not_found', 'no such organization');
  }

}

/** An org creation as REST and the CLI answer it: the first admin's key secret appears only here. */
export function presentOrgCreation(created: OrgCreation) {
  if (created.pending) {
    const { slug, name, status } = created.organization;
    return { organization: { slug, name, status }, statusUrl: `/api/v1/organizations/${slug}/status` };
  }
  const { organization, admin } = created;
  return {
    organization: publicOrg(organization),
    ...(admin && { admin: { user: admin.user, apiKey: admin.apiKey } }),
  };
}
