import { Injectable } from '@nestjs/common';
import { DatabaseService } from '@coffer/database';
import { HoldsWrappedKeys, WrappedKeyColumn } from '@coffer/tenancy';

/**
 * The data key sealing the delivery destination's credentials (`audit_destination`, one row),
 * wrapped by the org's KMS key. The table has no version column: only the value is swapped.
 */
@Injectable()
@HoldsWrappedKeys()
export class AuditDestinationKeys extends WrappedKeyColumn {
  constructor(db: DatabaseService) {
    super(db, { table: 'audit_destination', column: 'credentials_key', rowId: 'singleton' });
  }
}
