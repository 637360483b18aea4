import { Injectable } from '@nestjs/common';
import { AppError } from '@coffer/http';
import { OrgRef } from './org';
import { OrgsRepository } from './orgs.repository';

/** Registry entries change rarely (creation, activation); a short cache saves a query per request. */
const CACHE_TTL_MS = 30_000;

/** Finds orgs in the control plane's registry: only active ones are reachable. */
@Injectable()
export class OrgRegistry {
  private readonly cache = new Map<string, { org: OrgRef; at: number }>();

  constructor(private readonly repository: OrgsRepository) {}

  list(): Promise<OrgRef[]> {
    return this.repository.list();
  }

  /** The active org with this slug, or organization_not_found. */
  async resolve(slug: string): Promise<OrgRef> {
    const org = await this.cached(`slug:${slug}`, () => this.repository.findBySlug(slug));
    if (!org) throw new AppError('organization_not_found', 'no such organization');
    return org;
  }

  /** The registration of a slug whatever its status (a creation's progress), never cached. */
  registration(slug: string): Promise<OrgRef | undefined> {
    return this.repository.findBySlug(slug);
  }

  resolveById(id: string): Promise<OrgRef | undefined> {
    return this.cached(`id:${id}`, () => this.repository.findById(id));
  }

  listActive(): Promise<OrgRef[]> {
    return this.repository.list('active');
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
