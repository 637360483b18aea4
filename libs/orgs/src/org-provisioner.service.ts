import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { randomId } from '@coffer/crypto';
import { FieldKeysService } from '@coffer/fields';
import { OrgKeyService } from '@coffer/keys';
import { SpoolService } from '@coffer/spool';
import type { OrgRef } from '@coffer/tenancy';
import { OrgProvisioningRepository } from './org-provisioning.repository';

/**
 * Creates and completes org databases with the owner credentials (the provisioner's job, and
 * `coffer migrate`). Every step is idempotent, so running `provision` again on an org that
 * failed half-way (or was never finished because the process died) completes it and changes
 * nothing on an org that is complete.
 */
@Injectable()
export class OrgProvisioner {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly repository: OrgProvisioningRepository,
    private readonly orgKeys: OrgKeyService,
    private readonly fieldKeys: FieldKeysService,
    private readonly spool: SpoolService,
  ) {}

  /**
   * The org with this slug, registered, provisioned and active: created (or resumed where an
   * earlier attempt stopped), or found active already (`created: false`). One at a time per
   * slug (an advisory lock).
   */
  async create(slug: string, name: string): Promise<{ org: OrgRef; created: boolean }> {
    return this.repository.exclusively(`coffer-org-create:${slug}`, async () => {
      const { org } = await this.register(slug, name);
      if (org.status === 'active') return { org, created: false };
      await this.provision(org);
      return { org: await this.activate(org), created: true };
    });
  }

  /** Registers the org (status provisioning), or returns the existing registration of the slug. */
  async register(slug: string, name: string): Promise<{ org: OrgRef; created: boolean }> {
    const id = randomId();
    return this.repository.register({ id, slug, name, databaseName: `${this.config.ORG_DATABASE_PREFIX}${id}` });
  }

  /**
   * Database, schema, then under the migration lock the org's KMS key (libs/keys), its field
   * keys (libs/fields), its spool key (libs/spool), rows from before field encryption sealed;
   * then grants. Each key is audited as it is created. Leaves the org in status provisioning;
   * see `activate`. Needs the KMS: an unreachable one stops here with kms_unavailable.
   */
  async provision(org: OrgRef): Promise<void> {
    await this.repository.ensureDatabase(org);
    await this.repository.migrate(org, async (owner) => {
      const key = await this.orgKeys.ensure(org);
      await this.fieldKeys.prepare(owner, key);
      await this.spool.prepare(owner, key);
      await this.fieldKeys.sealLegacyRows(owner, org);
    });
  }

  async activate(org: OrgRef): Promise<OrgRef> {
    return this.repository.activate(org.id);
  }

  /** Brings every org database to this code's schema (`coffer migrate`, after the control plane). */
  async migrateAll(orgs: OrgRef[]): Promise<void> {
    for (const org of orgs) await this.provision(org);
  }
}
