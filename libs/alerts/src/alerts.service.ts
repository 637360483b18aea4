import { Inject, Injectable } from '@nestjs/common';
import { LOGGER, Logger } from '@coffer/logging';
import { Alert, AlertWebhookBody, alertFingerprint, webhookBody } from './alert';
import { AlertStateRepository } from './alert-state.repository';
import { AlertWebhooksRepository } from './alert-webhooks.repository';

/** A firing alert is remembered this long without a resolution, then may be sent again. */
const FIRING_TTL_SECONDS = 30 * 86_400;

/**
 * Raises and resolves alerts on the webhooks of ALERT_WEBHOOK_URLS. Each alert instance
 * (name + labels) is sent once when it starts firing and once when it resolves, however many
 * processes or job runs report it: the firing state is shared by every process
 * (AlertStateRepository). A delivery that reached no webhook forgets the state, so the next
 * report sends it again.
 */
@Injectable()
export class AlertsService {
  constructor(
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly state: AlertStateRepository,
    private readonly webhooks: AlertWebhooksRepository,
  ) {}

  /** Returns true when this call started the alert (it was not firing already). */
  async fire(alert: Alert): Promise<boolean> {
    const fingerprint = alertFingerprint(alert);
    if (!(await this.state.startFiring(fingerprint, alert, FIRING_TTL_SECONDS))) return false;
    this.logger.error({ alert: alert.name, labels: alert.labels, fingerprint }, `alert firing: ${alert.summary}`);
    if (!(await this.deliver(webhookBody('firing', alert, fingerprint)))) await this.state.forget(fingerprint);
    return true;
  }

  /** Returns true when the alert was firing and is now resolved. */
  async resolve(alert: Pick<Alert, 'name' | 'labels'>, endsAt: Date): Promise<boolean> {
    const fingerprint = alertFingerprint(alert);
    const firing = await this.state.stopFiring(fingerprint);
    if (!firing) return false;
    this.logger.info({ alert: alert.name, labels: alert.labels, fingerprint }, 'alert resolved');
    await this.deliver(webhookBody('resolved', firing, fingerprint, endsAt));
    return true;
  }

  /** Sends to every webhook; true when at least one accepted it (or none is configured). */
  private async deliver(body: AlertWebhookBody): Promise<boolean> {
    const results = await this.webhooks.post(body);
    for (const { webhook, error } of results) {
      if (error !== undefined) this.logger.warn({ webhook, status: body.status, err: { message: error } }, 'alert webhook failed');
    }
    return !results.length || results.some((r) => r.error === undefined);
  }
}
