import { Module } from '@nestjs/common';
import { KeysModule } from '@coffer/keys';
import { FieldKeysRepository } from './field-keys.repository';
import { FieldKeysService } from './field-keys.service';

@Module({
  imports: [KeysModule],
  providers: [FieldKeysRepository, FieldKeysService],
  exports: [FieldKeysService],
})
export class FieldsModule {}
