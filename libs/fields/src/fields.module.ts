import { Module } from '@nestjs/common';
import { FieldKeysRepository } from './field-keys.repository';
import { FieldKeysService } from './field-keys.service';

@Module({
  providers: [FieldKeysRepository, FieldKeysService],
  exports: [FieldKeysService],
})
export class FieldsModule {}
