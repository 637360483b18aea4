import { Module } from '@nestjs/common';
import { SpoolModule } from '@coffer/spool';
import { StorageModule } from '@coffer/storage';
import { AssetLinksService } from './asset-links.service';
import { LinkKeysRepository } from './link-keys.repository';
import { PackagesRepository } from './packages.repository';
import { PackagesService } from './packages.service';
import { PackageFlushService } from './package-flush.service';
import { PackageWrappedKeysModule } from './wrapped-keys';

@Module({
  imports: [StorageModule, SpoolModule, PackageWrappedKeysModule],
  providers: [PackagesRepository, PackagesService, PackageFlushService, LinkKeysRepository, AssetLinksService],
  exports: [PackagesService, PackageFlushService, AssetLinksService],
})
export class PackagesModule {}
