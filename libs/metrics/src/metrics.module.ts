import { Module } from '@nestjs/common';
import { KeysModule } from '@coffer/keys';
import { OrgsModule } from '@coffer/orgs';
import { MetricsService } from './metrics.service';

@Module({ imports: [KeysModule, OrgsModule], providers: [MetricsService], exports: [MetricsService] })
export class MetricsModule {}
