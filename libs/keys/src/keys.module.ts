import { Module } from '@nestjs/common';
import { KeyRotationRepository } from './key-rotation.repository';
import { KeyRotationService } from './key-rotation.service';

@Module({
  providers: [KeyRotationRepository, KeyRotationService],
  exports: [KeyRotationRepository, KeyRotationService],
})
export class KeysModule {}
