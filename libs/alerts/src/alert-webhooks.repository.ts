import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import type { AlertWebhookBody } from './alert';

/** How one webhook took a body: `webhook` is its origin only (paths and queries often hold tokens). */
export interface WebhookResult {
  webhook: string;
  /** Why it did not accept the body (no 2xx, unreachable, timed out); absent when it did. */
  error?: string;
}

/** The webhooks of ALERT_WEBHOOK_URLS, each sent a JSON POST within ALERT_WEBHOOK_TIMEOUT_MS. */
@Injectable()
export class AlertWebhooksRepository {
  private readonly urls: string[];

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {
    this.urls = config.ALERT_WEBHOOK_URLS.split(',').map((u) => u.trim()).filter(Boolean);
  }

  /** POSTs `body` to every webhook at once; one result per webhook, none when none is configured. */
  post(body: AlertWebhookBody): Promise<WebhookResult[]> {
    return Promise.all(
      this.urls.map(async (url): Promise<WebhookResult> => {
        try {
          const response = await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'user-agent': 'coffer-alerts' },
            body: JSON.stringify(body),
            signal: AbortSignal.timeout(this.config.ALERT_WEBHOOK_TIMEOUT_MS),
          });
          await response.body?.cancel();
          if (!response.ok) throw new Error(`status ${response.status}`);
          return { webhook: new URL(url).origin };
        } catch (error) {
          return { webhook: new URL(url).origin, error: (error as Error).message };
        }
      }),
    );
  }
}
