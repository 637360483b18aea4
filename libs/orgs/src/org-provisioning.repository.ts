import { Inject, Injectable } from '@nestjs/common';
import type { ClientBase } from 'pg';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import {
  applyGrants,
  ensureDatabase,
  migrate,
  orgGrants,
  orgMigrations,
  ownerUrlOf,
  roleOf,
  withClient,
  withDatabase,
} from '@coffer/database';
import { OrgRef, OrgRow, toOrgRef } from '@coffer/tenancy';

/**
 * What provisioning does as the owner role, each on a short-lived connection of its own (never
 * the app role's pools, never a request's unit of work): the registry rows of the control plane,
 * and each org's database, schema and grants.
 */
@Injectable()
export class OrgProvisioningRepository {
  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  /**
   * Runs `fn` holding a session advisory lock named `name` on a connection of its own to the
   * control plane (released when `fn` ends, or with the connection should the process die).
   */
  async exclusively<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return withClient(ownerUrlOf(this.config), async (owner) => {
      await owner.query('SELECT pg_advisory_lock(hashtextextended($1, 0))', [name]);
      try {
        return await fn();
      } finally {
        await owner.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [name]).catch(() => undefined);
      }
    });
  }

  /** Inserts the registration (status provisioning), or returns the one the slug already has. */
  async register(org: { id: string; slug: string; name: string; databaseName: string }): Promise<{ org: OrgRef; created: boolean }> {
    return withClient(ownerUrlOf(this.config), async (owner) => {
      const inserted = await owner.query<OrgRow>(
        `INSERT INTO organizations (id, slug, name, database_name) VALUES ($1, $2, $3, $4)
         ON CONFLICT (slug) DO NOTHING RETURNING *`,
        [org.id, org.slug, org.name, org.databaseName],
      );
      if (inserted.rows[0]) return { org: toOrgRef(inserted.rows[0]), created: true };
      const existing = await owner.query<OrgRow>('SELECT * FROM organizations WHERE slug = $1', [org.slug]);
      return { org: toOrgRef(existing.rows[0]), created: false };
    });
  }

  /** Creates the org's database if it is missing, CONNECT for the app role only. */
  async ensureDatabase(org: OrgRef): Promise<void> {
    await withClient(withDatabase(ownerUrlOf(this.config), 'postgres'), (admin) =>
      ensureDatabase(admin, org.databaseName, roleOf(this.config.DATABASE_APP_URL)),
    );
  }

  /**
   * Brings the org's database to this code's schema, runs `afterSchema` under the same migration
   * lock (the steps that need the KMS), then applies the app role's grants.
   */
  async migrate(org: OrgRef, afterSchema: (owner: ClientBase) => Promise<unknown>): Promise<void> {
    await withClient(withDatabase(ownerUrlOf(this.config), org.databaseName), async (owner) => {
      await migrate(owner, orgMigrations, afterSchema);
      await applyGrants(owner, roleOf(this.config.DATABASE_APP_URL), orgGrants);
    });
  }

  async activate(orgId: string): Promise<OrgRef> {
    return withClient(ownerUrlOf(this.config), async (owner) => {
      const { rows } = await owner.query<OrgRow>(
        `UPDATE organizations SET status = 'active', provisioned_at = coalesce(provisioned_at, now())
         WHERE id = $1 RETURNING *`,
        [orgId],
      );
      return toOrgRef(rows[0]);
    });
  }
}
