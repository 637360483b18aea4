import { Module } from '@nestjs/common';
import { SpoolModule } from '@coffer/spool';
import { FieldKeysRepository } from './field-keys.repository';
import { FieldKeysService } from './field-keys.service';

@Module({
  imports: [SpoolModule],
  providers: [FieldKeysRepository, FieldKeysService],
  exports: [FieldKeysService],
})
export class FieldsModule {}
