import { Module } from '@nestjs/common';
import { FieldsModule } from '@coffer/fields';
import { KeysModule } from '@coffer/keys';
import { SpoolModule } from '@coffer/spool';
import { UsersModule } from '@coffer/users';
import { OrgSettingsRepository } from './org-settings.repository';
import { OrgProvisioner } from './org-provisioner.service';
import { OrgProvisioningRepository } from './org-provisioning.repository';
import { OrgsService } from './orgs.service';

/** Org creation as the API and the CLI ask for it (app role), and org settings. */
@Module({
  imports: [UsersModule, FieldsModule],
  providers: [OrgsService, OrgSettingsRepository],
  exports: [OrgsService, OrgSettingsRepository, UsersModule],
})
export class OrgsModule {}

/**
 * What needs the owner's credentials: creating and migrating org databases. Only `coffer
 * migrate` and the provisioner import it.
 */
@Module({
  imports: [FieldsModule, KeysModule, SpoolModule],
  providers: [OrgProvisioner, OrgProvisioningRepository],
  exports: [OrgProvisioner],
})
export class OrgProvisioningModule {}
