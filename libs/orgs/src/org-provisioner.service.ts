import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { randomId } from '@coffer/crypto';
import {
  applyGrants,
  ensureDatabase,
  migrate,
  orgGrants,
  orgMigrations,
  roleOf,
  withClient,
  withDatabase,
} from '@coffer/database';
import { FieldKeysService } from '@coffer/fields';
import { OrgRef, OrgRow, toOrgRef } from '@coffer/tenancy';

/**
 * Creates and completes org databases with the owner credentials. Every step is idempotent,
 * so running `provision` again on an org that failed half-way (or was never finished because
 * the process died) completes it and changes nothing on an org that is complete.
 */
@Injectable()
export class OrgProvisioner {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly fieldKeys: FieldKeysService,
  ) {}

  /** Registers the org (status provisioning), or returns the existing registration of the slug. */
  async register(slug: string, name: string): Promise<{ org: OrgRef; created: boolean }> {
    return withClient(this.config.DATABASE_OWNER_URL, async (owner) => {
      const id = randomId();
      const inserted = await owner.query<OrgRow>(
        `INSERT INTO organizations (id, slug, name, database_name) VALUES ($1, $2, $3, $4)
         ON CONFLICT (slug) DO NOTHING RETURNING *`,
        [id, slug, name, `${this.config.ORG_DATABASE_PREFIX}${id}`],
      );
      if (inserted.rows[0]) return { org: toOrgRef(inserted.rows[0]), created: true };
      const existing = await owner.query<OrgRow>('SELECT * FROM organizations WHERE slug = $1', [slug]);
      return { org: toOrgRef(existing.rows[0]), created: false };
    });
  }

  /**
   * Database, schema, the org's KMS key and field keys, rows from before field encryption
   * sealed (under the migration lock), grants. Leaves the org in status provisioning; see
   * `activate`. Needs the KMS: an unreachable one stops here with kms_unavailable.
   */
  async provision(org: OrgRef): Promise<void> {
    const ownerUrl = this.config.DATABASE_OWNER_URL;
    const appRole = roleOf(this.config.DATABASE_APP_URL);
    await withClient(withDatabase(ownerUrl, 'postgres'), (admin) => ensureDatabase(admin, org.databaseName, appRole));
    await withClient(withDatabase(ownerUrl, org.databaseName), async (owner) => {
      await migrate(owner, orgMigrations, (locked) => this.fieldKeys.prepare(locked, org));
      await applyGrants(owner, appRole, orgGrants);
    });
  }

  async activate(org: OrgRef): Promise<OrgRef> {
    return withClient(this.config.DATABASE_OWNER_URL, async (owner) => {
      const { rows } = await owner.query<OrgRow>(
        `UPDATE organizations SET status = 'active', provisioned_at = coalesce(provisioned_at, now())
         WHERE id = $1 RETURNING *`,
        [org.id],
      );
      return toOrgRef(rows[0]);
    });
  }

  /** Brings every org database to this code's schema (run at API start, after the control plane). */
  async migrateAll(orgs: OrgRef[]): Promise<void> {
    for (const org of orgs) await this.provision(org);
  }
}
