import { Global, Module } from '@nestjs/common';
import { StorageModule } from '@coffer/storage';
import { AuditAnchorStore } from './audit-anchors';
import { AuditDeliveryRepository } from './audit-delivery.repository';
import { AuditDeliveryService } from './audit-delivery.service';
import { AuditRepository } from './audit.repository';
import { AuditService } from './audit.service';
import { AuditDestinationKeys } from './wrapped-keys';

/** `audit()`'s service, the chains, checkpoints (anchored in the storage backend), verify and delivery. */
@Global()
@Module({
  imports: [StorageModule],
  providers: [
    AuditAnchorStore,
    AuditRepository,
    AuditService,
    AuditDeliveryRepository,
    AuditDeliveryService,
    AuditDestinationKeys,
  ],
  exports: [AuditService, AuditDeliveryService],
})
export class AuditModule {}
