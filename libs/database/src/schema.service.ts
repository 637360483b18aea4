import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { applyGrants } from './grants';
import { latestVersion, migrate, schemaVersion, SchemaTooNewError } from './migrator';
import { controlMigrations, controlGrants } from './migrations/control.migrations';
import { databaseOf, ownerUrlOf, roleOf, withClient, withDatabase } from './pg';
import { ensureDatabase } from './roles';

/**
 * Brings the control-plane database to this code's schema (`coffer migrate`, with the owner's
 * credentials), and lets the processes that never hold them wait for it.
 */
@Injectable()
export class SchemaService {
  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  async migrateControlPlane(): Promise<{ from: number; to: number }> {
    const ownerUrl = ownerUrlOf(this.config);
    const appRole = roleOf(this.config.DATABASE_APP_URL);
    await withClient(withDatabase(ownerUrl, 'postgres'), (admin) =>
      ensureDatabase(admin, databaseOf(ownerUrl), appRole),
    );
    return withClient(ownerUrl, async (owner) => {
      const result = await migrate(owner, controlMigrations);
      await applyGrants(owner, appRole, controlGrants);
      return result;
    });
  }

  /**
   * For the processes that do not migrate (API, worker, provisioner): wait until `coffer migrate`
   * has brought the control plane to exactly this code's version; refuse a newer schema at once.
   */
  async waitForControlPlane(timeoutMs: number, pollMs = 1000): Promise<void> {
    const known = latestVersion(controlMigrations);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = await withClient(this.config.DATABASE_APP_URL, schemaVersion).catch(() => -1);
      if (found === known) return;
      if (found > known) throw new SchemaTooNewError(databaseOf(this.config.DATABASE_APP_URL), found, known);
      if (Date.now() > deadline) {
        throw new Error(`control-plane schema is at version ${found}, expected ${known}; has \`coffer migrate\` run?`);
      }
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }
}
