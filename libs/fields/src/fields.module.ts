import { Module } from '@nestjs/common';
import { KeysModule } from '@coffer/keys';
import { FieldKeysRepository, FieldKeyWrappings } from './field-keys.repository';
import { FieldKeysService } from './field-keys.service';

@Module({
  imports: [KeysModule],
  providers: [FieldKeysRepository, FieldKeyWrappings, FieldKeysService],
  exports: [FieldKeysService],
})
export class FieldsModule {}
