import { Module } from '@nestjs/common';
import { FieldsModule } from '@coffer/fields';
import { KeysModule } from '@coffer/keys';
import { SpoolModule } from '@coffer/spool';
import { UsersModule } from '@coffer/users';
import { OrgSettingsRepository } from './org-settings.repository';
import { OrgProvisioner } from './org-provisioner.service';
import { OrgProvisioningRepository } from './org-provisioning.repository';
import { OrgsService } from './orgs.service';

@Module({
  imports: [UsersModule, FieldsModule, KeysModule, SpoolModule],
  providers: [OrgProvisioner, OrgProvisioningRepository, OrgsService, OrgSettingsRepository],
  exports: [OrgsService, OrgProvisioner, OrgSettingsRepository, UsersModule],
})
export class OrgsModule {}
