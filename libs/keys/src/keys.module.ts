import { Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { KeyRotationRepository } from './key-rotation.repository';
import { KeyRotationService } from './key-rotation.service';
import { OrgKeyService } from './org-key.service';
import { WrappedKeys } from './wrapped-keys';

@Module({
  imports: [DiscoveryModule],
  providers: [KeyRotationRepository, KeyRotationService, OrgKeyService, WrappedKeys],
  exports: [KeyRotationRepository, KeyRotationService, OrgKeyService, WrappedKeys],
})
export class KeysModule {}
