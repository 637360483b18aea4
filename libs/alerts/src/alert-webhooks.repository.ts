import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { EgressPolicy } from '@coffer/http';
import type { AlertWebhookBody } from './alert';

/** How one webhook took a body: `webhook` is its origin only (paths and queries often hold tokens). */
export interface WebhookResult {
  webhook: string;
  /** Why it did not accept the body (no 2xx, unreachable, refused by the egress policy, timed out); absent when it did. */
  error?: string;
}

/**
 * The webhooks of ALERT_WEBHOOK_URLS, each sent a JSON POST within ALERT_WEBHOOK_TIMEOUT_MS,
 * through the egress policy (OUTBOUND_ALLOWED_HOSTS): node:http's agents take its lookup, which
 * fetch offers no way to.
 */
@Injectable()
export class AlertWebhooksRepository {
  private readonly urls: URL[];
  private readonly egress: EgressPolicy;

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {
    this.urls = config.ALERT_WEBHOOK_URLS.split(',').map((u) => u.trim()).filter(Boolean).map((u) => new URL(u));
    this.egress = new EgressPolicy(config.OUTBOUND_ALLOWED_HOSTS);
  }

  /** POSTs `body` to every webhook at once; one result per webhook, none when none is configured. */
  post(body: AlertWebhookBody): Promise<WebhookResult[]> {
    const json = Buffer.from(JSON.stringify(body));
    return Promise.all(
      this.urls.map(async (url): Promise<WebhookResult> => {
        try {
          const status = await this.send(url, json);
          if (status < 200 || status > 299) throw new Error(`status ${status}`);
          return { webhook: url.origin };
        } catch (error) {
          return { webhook: url.origin, error: (error as Error).message };
        }
      }),
    );
  }

  /** The webhook's answer status; its body is read and dropped. */
  private send(url: URL, json: Buffer): Promise<number> {
    const https = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const request = (https ? httpsRequest : httpRequest)(
        url,
        {
          method: 'POST',
          agent: https ? this.egress.httpsAgent : this.egress.httpAgent,
          headers: { 'content-type': 'application/json', 'content-length': json.length, 'user-agent': 'coffer-alerts' },
          signal: AbortSignal.timeout(this.config.ALERT_WEBHOOK_TIMEOUT_MS),
        },
        (response) => {
          response.resume().once('end', () => resolve(response.statusCode ?? 0)).once('error', reject);
        },
      );
      request.once('error', reject);
      request.end(json);
    });
  }
}
