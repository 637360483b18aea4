import { Module } from '@nestjs/common';
import { AlertsModule } from '@coffer/alerts';
import { KeysModule } from '@coffer/keys';
import { SpoolModule } from '@coffer/spool';
import { CertificatesModule } from '@coffer/tls';
import { AlertChecksService } from './alert-checks.service';
import { MetricsService } from './metrics.service';
import { WorkerMetricsService } from './worker-metrics.service';

/** The API's metrics listener. */
@Module({ imports: [KeysModule, CertificatesModule, SpoolModule], providers: [MetricsService], exports: [MetricsService] })
export class MetricsModule {}

/** The worker's own metrics and health listener. */
@Module({ providers: [WorkerMetricsService], exports: [WorkerMetricsService] })
export class WorkerMetricsModule {}

/** The worker's alert checks, over the same live state. */
@Module({ imports: [AlertsModule, SpoolModule], providers: [AlertChecksService], exports: [AlertChecksService] })
export class AlertChecksModule {}
