import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Redis } from 'ioredis';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import type { Alert } from './alert';

/**
 * Which alert instances are firing, in Redis so that every process shares it:
 * `<REDIS_KEY_PREFIX>:alert:<fingerprint>` holds the alert as it started firing. On a connection
 * of its own, opened at first use and closed at shutdown.
 */
@Injectable()
export class AlertStateRepository implements OnApplicationShutdown {
  private readonly redis: Redis;

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {
    this.redis = new Redis(config.REDIS_URL, {
      connectionName: `coffer-${process.env.COFFER_SERVICE ?? 'app'}-alerts`,
      // As on the jobs' connection: a command waits through a Redis restart rather than fail.
      maxRetriesPerRequest: null,
      enableOfflineQueue: true,
      lazyConnect: true,
    });
    this.redis.on('error', () => undefined); // ioredis reconnects by itself
  }

  /** Records `alert` as firing for `ttlSeconds`, unless it is already: true when it was not. */
  async startFiring(fingerprint: string, alert: Alert, ttlSeconds: number): Promise<boolean> {
    const state = JSON.stringify({ ...alert, startsAt: alert.startsAt.toISOString() });
    return (await this.redis.set(this.key(fingerprint), state, 'EX', ttlSeconds, 'NX')) === 'OK';
  }

  /** Forgets that the alert fires: the next startFiring succeeds. */
  async forget(fingerprint: string): Promise<void> {
    await this.redis.del(this.key(fingerprint));
  }

  /** Removes the firing alert and returns it, if it was firing. */
  async stopFiring(fingerprint: string): Promise<Alert | undefined> {
    const state = await this.redis.getdel(this.key(fingerprint));
    if (!state) return undefined;
    const firing = JSON.parse(state) as Omit<Alert, 'startsAt'> & { startsAt: string };
    return { ...firing, startsAt: new Date(firing.startsAt) };
  }

  onApplicationShutdown(): void {
    this.redis.disconnect();
  }

  private key(fingerprint: string): string {
    return `${this.config.REDIS_KEY_PREFIX}:alert:${fingerprint}`;
  }
}
