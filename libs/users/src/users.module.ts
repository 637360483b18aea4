import { Module } from '@nestjs/common';
import { FieldsModule } from '@coffer/fields';
import { ApiKeysRepository } from './api-keys.repository';
import { ApiKeysService } from './api-keys.service';
import { UsersRepository } from './users.repository';
import { UsersService } from './users.service';

@Module({
  imports: [FieldsModule],
  providers: [UsersRepository, UsersService, ApiKeysRepository, ApiKeysService],
  exports: [UsersService, ApiKeysService],
})
export class UsersModule {}
