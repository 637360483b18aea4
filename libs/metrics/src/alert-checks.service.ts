import { Inject, Injectable } from '@nestjs/common';
import { AlertsService } from '@coffer/alerts';
import { AuditDeliveryService } from '@coffer/audit';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { KMS, KmsProvider } from '@coffer/kms';
import { SpoolRepository } from '@coffer/spool';
import { OrgRef, OrgRegistry } from '@coffer/tenancy';

/**
 * The conditions an operator is paged for, checked from live state by the worker's
 * `alert-checks` job (ALERT_CHECK_CRON). Each alert fires once when its condition starts and
 * resolves once when it ends (libs/alerts keeps the state in Redis, shared by every worker).
 * Certificate renewal alerts are raised by the renewal itself (libs/tls).
 */
@Injectable()
export class AlertChecksService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(KMS) private readonly kms: KmsProvider,
    private readonly orgs: OrgRegistry,
    private readonly delivery: AuditDeliveryService,
    private readonly alerts: AlertsService,
    private readonly spool: SpoolRepository,
  ) {}

  async run(now = new Date()): Promise<{ kmsUp: boolean; lagging: string[]; spoolGrowing: string[] }> {
    const health = await this.kms.health();
    const kmsUp = health.reachable && !health.sealed;
    const kmsAlert = { name: 'KmsUnavailable', labels: { provider: this.kms.kind } };
    if (kmsUp) await this.alerts.resolve(kmsAlert, now);
    else {
      await this.alerts.fire({
        ...kmsAlert,
        severity: 'critical',
        summary: health.sealed ? 'The KMS is sealed' : 'The KMS does not answer',
        description: 'Reads continue from cached data keys; writes that need a new data key are queued until it is back.',
        startsAt: now,
      });
    }
    const lagging: string[] = [];
    const spoolGrowing: string[] = [];
    for (const org of await this.orgs.listActive()) {
      if (await this.checkSpool(org, now)) spoolGrowing.push(org.slug);
      const alert = { name: 'AuditDeliveryLagging', labels: { org: org.slug } };
      const behind = await this.deliveryLagSeconds(org, now);
      if (behind < this.config.AUDIT_DELIVERY_LAG_ALERT_SECONDS) {
        await this.alerts.resolve(alert, now);
        continue;
      }
      lagging.push(org.slug);
      await this.alerts.fire({
        ...alert,
        severity: 'warning',
        summary: `Audit entries of ${org.slug} have not reached its bucket for ${Math.round(behind / 60)} minutes`,
        startsAt: now,
      });
    }
    return { kmsUp, lagging, spoolGrowing };
  }

  /** SpoolGrowing: more than SPOOL_PENDING_WRITES_ALERT writes of the org wait for the KMS. */
  private async checkSpool(org: OrgRef, now: Date): Promise<boolean> {
    const alert = { name: 'SpoolGrowing', labels: { org: org.slug } };
    const pending = await this.spool.countPending(org);
    if (pending <= this.config.SPOOL_PENDING_WRITES_ALERT) {
      await this.alerts.resolve(alert, now);
      return false;
    }
    await this.alerts.fire({
      ...alert,
      severity: 'warning',
      summary: `${pending} writes of ${org.slug} are queued in the spool`,
      description: 'They are stored encrypted and flushed in order once the KMS answers again.',
      startsAt: now,
    });
    return true;
  }

  /** How long entries have been waiting: since the last delivery (or the destination's setup); 0 with no destination. */
  private async deliveryLagSeconds(org: Parameters<AuditDeliveryService['progress']>[0], now: Date): Promise<number> {
    const d = await this.delivery.progress(org);
    if (!d || d.pendingEntries === 0) return 0;
    return (now.getTime() - Date.parse(d.lastDeliveredAt ?? d.updatedAt)) / 1000;
  }
}
