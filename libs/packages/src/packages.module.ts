import { Module } from '@nestjs/common';
import { OrgsModule } from '@coffer/orgs';
import { StorageModule } from '@coffer/storage';
import { AssetLinksService } from './asset-links.service';
import { LinkKeysRepository } from './link-keys.repository';
import { PackagesRepository } from './packages.repository';
import { PackagesService } from './packages.service';

@Module({
  imports: [StorageModule, OrgsModule],
  providers: [PackagesRepository, PackagesService, LinkKeysRepository, AssetLinksService],
  exports: [PackagesService, AssetLinksService],
})
export class PackagesModule {}
