import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { JobsService } from '@coffer/jobs';

// Deletes the lock only if it is still ours: after a TTL expiry another replica may hold it.
const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/**
 * One replica at a time orders a certificate: Let's Encrypt limits duplicate certificates and
 * failed validations per account and name, and replicas sharing TLS_DIR need only one order.
 */
@Injectable()
export class OrderLock {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly jobs: JobsService,
  ) {}

  /** Runs `work` unless another replica holds `name`; returns whether it ran. */
  async run(name: string, ttlMs: number, work: () => Promise<void>): Promise<boolean> {
    const key = `${this.config.REDIS_KEY_PREFIX}:lock:${name}`;
    const id = randomUUID();
    if ((await this.jobs.redis.set(key, id, 'PX', ttlMs, 'NX')) !== 'OK') return false;
    try {
      await work();
      return true;
    } finally {
      await this.jobs.redis.eval(RELEASE, 1, key, id);
    }
  }
}
