import { Global, Module } from '@nestjs/common';
import { OrgRegistry } from './org-registry';
import { OrgsRepository } from './orgs.repository';

/** The org registry, for every request, job and command that acts on an org. */
@Global()
@Module({
  providers: [OrgsRepository, OrgRegistry],
  exports: [OrgRegistry],
})
export class TenancyModule {}
