import { Module } from '@nestjs/common';
import { UsersModule } from '@coffer/users';
import { OrgProvisioner } from './org-provisioner.service';
import { OrgsRepository } from './orgs.repository';
import { OrgsService } from './orgs.service';

@Module({
  imports: [UsersModule],
  providers: [OrgsRepository, OrgProvisioner, OrgsService],
  exports: [OrgsService, OrgProvisioner, UsersModule],
})
export class OrgsModule {}
