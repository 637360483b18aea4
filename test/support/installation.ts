import type { INestApplicationContext } from '@nestjs/common';
import type { AppConfig } from '@coffer/config';
import { MigrationResult, migrateInstallation } from '../../apps/cli/src/migrate';
import { createProvisioner } from '../../apps/provisioner/src/bootstrap';

/**
 * What compose and the local start run before the API and the worker: `coffer migrate` (the
 * control plane, every org, the bootstrap token), then the provisioner, here in this process.
 * `close()` stops the provisioner.
 */
export async function installCoffer(config: AppConfig): Promise<{ migration: MigrationResult; provisioner: INestApplicationContext; close(): Promise<void> }> {
  const migration = await migrateInstallation(config);
  const provisioner = await createProvisioner(config, 10_000);
  return { migration, provisioner, close: () => provisioner.close() };
}
