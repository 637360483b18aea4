import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { JobsService } from '@coffer/jobs';

/** A pending challenge outlives no order: Let's Encrypt authorizations time out well within this. */
const CHALLENGE_TTL_SECONDS = 3600;

/**
 * ACME HTTP-01 key authorizations by token, written by the ACME client while an order is
 * pending and read by the plain-HTTP listener. In Redis, shared by every replica: the CA's
 * validation request may reach any of them through the load balancer, not only the one ordering.
 */
@Injectable()
export class ChallengeStore {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly jobs: JobsService,
  ) {}

  async set(token: string, keyAuthorization: string): Promise<void> {
    await this.jobs.redis.set(this.key(token), keyAuthorization, 'EX', CHALLENGE_TTL_SECONDS);
  }

  async get(token: string): Promise<string | undefined> {
    return (await this.jobs.redis.get(this.key(token))) ?? undefined;
  }

  async delete(token: string): Promise<void> {
    await this.jobs.redis.del(this.key(token));
  }

  private key(token: string): string {
    return `${this.config.REDIS_KEY_PREFIX}:acme-challenge:${token}`;
  }
}
