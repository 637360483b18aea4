import type { ServerResponse } from 'node:http';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { AppError, RetryLaterError } from '@coffer/http';
import { whenClosed } from './abuse-limits';

interface Waiter {
  admit(): void;
}

/**
 * The per-org ceiling on requests in progress in this API process (ORG_CONCURRENT_REQUESTS):
 * requests past it wait in their org's own queue, first come first served, so a busy org waits
 * behind itself and never holds up another org; past the queue's length or its wait, 429
 * organization_busy. A waiting request holds no database connection and has not read its body.
 */
@Injectable()
export class OrgRequestGate {
  private readonly orgs = new Map<string, { running: number; waiting: Waiter[] }>();

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  /** Waits for the org's turn; the turn ends when `response` closes (answered, or the client gone). */
  async enter(orgId: string, response: ServerResponse): Promise<void> {
    let org = this.orgs.get(orgId);
    if (!org) this.orgs.set(orgId, (org = { running: 0, waiting: [] }));
    if (org.running < this.config.ORG_CONCURRENT_REQUESTS) {
      org.running++;
    } else {
      if (org.waiting.length >= this.config.ORG_QUEUED_REQUESTS) throw busy();
      await this.wait(org.waiting, response);
    }
    // The turn is handed to the next waiter, or given back.
    const leave = () => {
      const next = org.waiting.shift();
      if (next) next.admit();
      else if (--org.running === 0 && !org.waiting.length) this.orgs.delete(orgId);
    };
    whenClosed(response, leave);
  }

  private wait(queue: Waiter[], response: ServerResponse): Promise<void> {
    return new Promise((resolve, reject) => {
      const give = (error: Error) => {
        const at = queue.indexOf(waiter);
        if (at >= 0) queue.splice(at, 1);
        clearTimeout(timer);
        response.off('close', gone);
        reject(error);
      };
      const gone = () => give(new AppError('client_closed_request', 'the client went away while the request waited for its turn'));
      const timer = setTimeout(() => give(busy()), this.config.ORG_QUEUE_TIMEOUT_MS);
      const waiter: Waiter = {
        admit: () => {
          clearTimeout(timer);
          response.off('close', gone);
          resolve();
        },
      };
      response.once('close', gone);
      queue.push(waiter);
    });
  }
}

function busy(): RetryLaterError {
  return new RetryLaterError('organization_busy', 'the organization has too many requests in progress; retry later', 1);
}
