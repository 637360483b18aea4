import { Injectable } from '@nestjs/common';
import { AppError } from '@coffer/http';
import { UsersService } from '@coffer/users';
import { OrgRef } from './org';
import { OrgProvisioner } from './org-provisioner.service';
import { OrgsRepository } from './orgs.repository';

export interface NewOrganization {
  slug: string;
  name: string;
  admin?: { email: string; displayName: string };
}

/** Registry entries change rarely (creation, activation); a short cache saves a query per request. */
const CACHE_TTL_MS = 30_000;

@Injectable()
export class OrgsService {
  private readonly cache = new Map<string, { org: OrgRef; at: number }>();

  constructor(
    private readonly registry: OrgsRepository,
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

  list(): Promise<OrgRef[]> {
    return this.registry.list();
  }

  /** The active org with this slug, or organization_not_found. */
  async resolve(slug: string): Promise<OrgRef> {
    const org = await this.cached(`slug:${slug}`, () => this.registry.findBySlug(slug));
    if (!org) throw new AppError('organization_not_found', 'no such organization');
    return org;
  }

  resolveById(id: string): Promise<OrgRef | undefined> {
    return this.cached(`id:${id}`, () => this.registry.findById(id));
  }

  listActive(): Promise<OrgRef[]> {
    return this.registry.list('active');
  }

  private async cached(key: string, load: () => Promise<OrgRef | undefined>): Promise<OrgRef | undefined> {
    const hit = this.cache.get(key);
    if (hit && Date.now() - hit.at < CACHE_TTL_MS) return hit.org;
    const org = await load();
    // Only active orgs are cached (and served): a provisioning org must be looked at afresh.
    if (org?.status === 'active') {
      this.cache.set(key, { org, at: Date.now() });
      return org;
    }
    this.cache.delete(key);
    return undefined;
  }
}
