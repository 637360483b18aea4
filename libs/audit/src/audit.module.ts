import { Global, Module } from '@nestjs/common';
import { AuditDeliveryRepository } from './audit-delivery.repository';
import { AuditDeliveryService } from './audit-delivery.service';
import { AuditRepository } from './audit.repository';
import { AuditService } from './audit.service';
import { AuditDestinationKeys } from './wrapped-keys';

/** `audit()`'s service, the chains, checkpoints, verify and delivery. */
@Global()
@Module({
  providers: [
    AuditRepository,
    AuditService,
    AuditDeliveryRepository,
    AuditDeliveryService,
    AuditDestinationKeys,
  ],
  exports: [AuditService, AuditDeliveryService],
})
export class AuditModule {}
