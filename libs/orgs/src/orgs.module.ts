import { Module } from '@nestjs/common';
import { FieldsModule } from '@coffer/fields';
import { UsersModule } from '@coffer/users';
import { OrgSettingsRepository } from './org-settings.repository';
import { OrgProvisioner } from './org-provisioner.service';
import { OrgsService } from './orgs.service';

@Module({
  imports: [UsersModule, FieldsModule],
  providers: [OrgProvisioner, OrgsService, OrgSettingsRepository],
  exports: [OrgsService, OrgProvisioner, OrgSettingsRepository, UsersModule],
})
export class OrgsModule {}
