import { Module } from '@nestjs/common';
import { KeysModule } from '@coffer/keys';
import { OrgsModule } from '@coffer/orgs';
import { CertificatesModule } from '@coffer/tls';
import { MetricsService } from './metrics.service';

@Module({ imports: [KeysModule, OrgsModule, CertificatesModule], providers: [MetricsService], exports: [MetricsService] })
export class MetricsModule {}
