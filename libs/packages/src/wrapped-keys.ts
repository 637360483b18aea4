import { Injectable, Module } from '@nestjs/common';
import { DatabaseService } from '@coffer/database';
import { HoldsWrappedKeys, WrappedKeyColumn } from '@coffer/tenancy';

/**
 * Each package version's content DEK, wrapped by the org's KMS key. A DEK still sealed to the
 * spool key (`spool:...`, a queued upload) has no KMS version: neither counted nor listed until flushed.
 */
@Injectable()
@HoldsWrappedKeys()
export class PackageVersionKeys extends WrappedKeyColumn {
  constructor(db: DatabaseService) {
    super(db, { table: 'package_versions', column: 'wrapped_dek', rowId: 'id', versionColumn: 'kms_key_version' });
  }
}

/** The asset-link signing keys, wrapped by the org's KMS key. */
@Injectable()
@HoldsWrappedKeys()
export class LinkKeyWrappedKeys extends WrappedKeyColumn {
  constructor(db: DatabaseService) {
    super(db, { table: 'link_keys', column: 'wrapped_key', rowId: 'id', versionColumn: 'kms_key_version' });
  }
}

/**
 * The holders alone (they need only the database), imported by PackagesModule and by an app that
 * reports or rotates org keys without serving packages (the CLI), so that its counts are whole.
 */
@Module({ providers: [PackageVersionKeys, LinkKeyWrappedKeys] })
export class PackageWrappedKeysModule {}
