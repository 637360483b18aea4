import { Module } from '@nestjs/common';
import { AlertsModule } from '@coffer/alerts';
import { KeysModule } from '@coffer/keys';
import { OrgsModule } from '@coffer/orgs';
import { SpoolModule } from '@coffer/spool';
import { CertificatesModule } from '@coffer/tls';
import { AlertChecksService } from './alert-checks.service';
import { MetricsService } from './metrics.service';

/** The API's metrics listener. */
@Module({ imports: [KeysModule, OrgsModule, CertificatesModule, SpoolModule], providers: [MetricsService], exports: [MetricsService] })
export class MetricsModule {}

/** The worker's alert checks, over the same live state. */
@Module({ imports: [OrgsModule, AlertsModule, SpoolModule], providers: [AlertChecksService], exports: [AlertChecksService] })
export class AlertChecksModule {}
