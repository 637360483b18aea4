import { Global, Module } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { AuditDeliveryRepository } from './audit-delivery.repository';
import { AuditDeliveryService } from './audit-delivery.service';
import { AuditInterceptor } from './audit.interceptor';
import { AuditRepository } from './audit.repository';
import { AuditService } from './audit.service';

/** Importing this module puts every route in an audit scope (AuditInterceptor). */
@Global()
@Module({
  providers: [
    AuditRepository,
    AuditService,
    AuditDeliveryRepository,
    AuditDeliveryService,
    { provide: APP_INTERCEPTOR, useClass: AuditInterceptor },
  ],
  exports: [AuditService, AuditDeliveryService],
})
export class AuditModule {}
