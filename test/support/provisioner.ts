import { AuditRepository, AuditService } from '@coffer/audit';
import { DatabaseService } from '@coffer/database';
import { FieldKeysRepository, FieldKeysService } from '@coffer/fields';
import { OrgKeyService } from '@coffer/keys';
import { CachingKmsProvider, createKmsProvider } from '@coffer/kms';
import { createLogger } from '@coffer/logging';
import { OrgProvisioner, OrgProvisioningRepository } from '@coffer/orgs';
import { SpoolRepository, SpoolService } from '@coffer/spool';
import type { TestEnv } from './test-env';

export interface TestProvisioner {
  provisioner: OrgProvisioner;
  fieldKeys: FieldKeysService;
  kms: CachingKmsProvider;
  db: DatabaseService;
  audit: AuditService;
  close(): Promise<void>;
}

/**
 * The org provisioner as the API builds it (the env's KMS behind the data-key cache), for tests
 * that provision without an API. The control plane must be migrated first (the local KMS keeps
 * its keys there).
 */
export function testProvisioner(env: TestEnv): TestProvisioner {
  const db = new DatabaseService(env.config);
  const kms = createKmsProvider(env.config, db.control);
  const audit = new AuditService(new AuditRepository(db), createLogger('silent'), kms);
  const orgKeys = new OrgKeyService(kms, audit);
  const fieldKeys = new FieldKeysService(new FieldKeysRepository(db), kms, orgKeys);
  const spool = new SpoolService(new SpoolRepository(db), kms, orgKeys);
  const provisioner = new OrgProvisioner(env.config, new OrgProvisioningRepository(env.config), orgKeys, fieldKeys, spool);
  return { provisioner, fieldKeys, kms, db, audit, close: () => db.onApplicationShutdown() };
}
