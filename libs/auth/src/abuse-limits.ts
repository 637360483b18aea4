import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { isIPv6 } from 'node:net';
import { Inject, Injectable, OnApplicationShutdown, SetMetadata } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { AuditedWork, AuditService } from '@coffer/audit';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { RetryLaterError } from '@coffer/http';
import { createRedis } from '@coffer/jobs';
import { LOGGER, Logger } from '@coffer/logging';
import type { OrgRef } from '@coffer/tenancy';

/** What a refused request's audit entry says, as AuthGuard records its other failures. */
export type RefusalEntry = Omit<AuditedWork<unknown>, 'work' | 'transactional'>;

export const ABUSE_LIMIT_KEY = 'coffer:abuse-limit';

/**
 * A route's own abuse limit, applied by AuthGuard: `asset_links` counts every request per client
 * address (a public route whose every check costs lookups); `uploads` takes one of the org's
 * upload slots for as long as the request runs.
 */
export const AbuseLimit = (limit: 'asset_links' | 'uploads') => SetMetadata(ABUSE_LIMIT_KEY, limit);

/** An upload slot is a lease, renewed while its upload runs: a crashed replica's slots expire. */
const UPLOAD_LEASE_MS = 60_000;
const UPLOAD_RETRY_AFTER_SECONDS = 5;
/** Refusals without a window of their own (concurrency limits): the first one per minute is audited. */
const REFUSAL_AUDIT_WINDOW_SECONDS = 60;

/** Redis's clock, in ms: one clock for every replica's leases. */
const NOW = `local t = redis.call('time') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;
/** KEYS[1]: the org's leases (a sorted set by expiry); ARGV: limit, lease ms, lease id. 1 when taken. */
const TAKE_SLOT = `${NOW}
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('zadd', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('pexpire', KEYS[1], ARGV[2])
return 1`;
/** ARGV: lease ms, lease id. Extends a lease still held. */
const RENEW_SLOT = `${NOW}
if redis.call('zadd', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[2]) == 1 then redis.call('pexpire', KEYS[1], ARGV[1]) end
return 1`;

/**
 * Abuse limits shared by every replica through Redis (rate-limiter-flexible; docs/security.md):
 * failed authentications per client address and per key id, anonymous asset-link requests per
 * address, and concurrent uploads per org. A refusal is 429 with Retry-After; the first refusal
 * of each window is audited, not every one (a flood must not flood the audit log). While Redis
 * is unreachable, each replica counts on its own (the limiters' in-memory insurance) and upload
 * slots are not enforced.
 */
@Injectable()
export class AbuseLimits implements OnApplicationShutdown {
  /** Its own connection, failing fast: a request never waits for Redis to come back. */
  private readonly redis: Redis;
  private readonly authFailuresByIp: RateLimiterRedis;
  private readonly authFailuresByKey: RateLimiterRedis;
  private readonly assetLinksByIp: RateLimiterRedis;
  /** One point per limit and subject per window: whoever takes it audits the refusal. */
  private readonly auditedRefusals: RateLimiterRedis;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly audit: AuditService,
  ) {
    this.redis = createRedis(config.REDIS_URL, { name: `coffer-${process.env.COFFER_SERVICE ?? 'app'}-limits` });
    this.redis.on('error', () => undefined); // the limiters fall back to memory; ioredis reconnects by itself
    const window = config.RATE_LIMIT_AUTH_WINDOW_SECONDS;
    this.authFailuresByIp = this.limiter('auth-ip', config.RATE_LIMIT_AUTH_FAILURES_PER_IP, window);
    this.authFailuresByKey = this.limiter('auth-key', config.RATE_LIMIT_AUTH_FAILURES_PER_KEY, window);
    this.assetLinksByIp = this.limiter('asset-links-ip', config.RATE_LIMIT_ASSET_LINKS_PER_IP, config.RATE_LIMIT_ASSET_LINKS_WINDOW_SECONDS);
    this.auditedRefusals = this.limiter('refused', 1, REFUSAL_AUDIT_WINDOW_SECONDS);
  }

  /**
   * Before any lookup of the presented credentials (Redis only): 429 when the client's address
   * or the key id has used up its failures. A valid key from a refused address is refused too.
   */
  async beforeAuthentication(request: FastifyRequest, keyId: string | undefined, entry: () => RefusalEntry): Promise<void> {
    const address = addressKey(request.ip);
    const [byIp, byKey] = await this.failureCounts(address, keyId);
    const refusal =
      byIp >= this.authFailuresByIp.points
        ? { limiter: this.authFailuresByIp, limit: 'auth_failures_per_ip', subject: address }
        : byKey >= this.authFailuresByKey.points
          ? { limiter: this.authFailuresByKey, limit: 'auth_failures_per_key', subject: keyId! }
          : undefined;
    const res = refusal && (await refusal.limiter.get(refusal.subject));
    if (!refusal || !res) return; // within the limits, or the window ended meanwhile
    const error = retryLater('authentication_rate_limited', 'too many failed authentications; retry later', res);
    await this.refuse(entry, { limit: refusal.limit, subject: refusal.subject, windowMs: res.msBeforeNext }, error);
  }

  /**
   * The failures counted for the address and the key id: one MGET on every authentication, on
   * the limiters' own keys (their get() costs two MULTIs). Redis unreachable: the limiters'
   * in-memory counts.
   */
  private async failureCounts(address: string, keyId: string | undefined): Promise<[number, number]> {
    const keys = [this.authFailuresByIp.getKey(address), this.authFailuresByKey.getKey(keyId ?? '')];
    try {
      const [byIp, byKey] = await this.redis.mget(keys);
      return [Number(byIp ?? 0), keyId ? Number(byKey ?? 0) : 0];
    } catch {
      const [byIp, byKey] = await Promise.all([this.authFailuresByIp.get(address), keyId ? this.authFailuresByKey.get(keyId) : null]);
      return [byIp?.consumedPoints ?? 0, byKey?.consumedPoints ?? 0];
    }
  }

  /** A failed authentication counts against the client's address and the key id presented. */
  async authenticationFailed(request: FastifyRequest, keyId: string | undefined): Promise<void> {
    await Promise.all([this.authFailuresByIp.penalty(addressKey(request.ip)), keyId && this.authFailuresByKey.penalty(keyId)]);
  }

  /** One anonymous asset-link request of the client's address, or 429. */
  async assetLinkRequest(request: FastifyRequest, entry: () => RefusalEntry): Promise<void> {
    const subject = addressKey(request.ip);
    try {
      await this.assetLinksByIp.consume(subject);
    } catch (error) {
      if (!(error instanceof RateLimiterRes)) throw error;
      await this.refuse(entry, { limit: 'asset_links_per_ip', subject, windowMs: error.msBeforeNext }, retryLater('asset_link_rate_limited', 'too many asset-link requests; retry later', error));
    }
  }

  /**
   * One of the org's upload slots (all replicas together) until `response` closes, or 429. The
   * lease is renewed while the request runs; if this replica dies, it expires.
   */
  async uploadSlot(org: OrgRef, response: ServerResponse, entry: () => RefusalEntry): Promise<void> {
    const key = `${this.config.REDIS_KEY_PREFIX}:limits:uploads:${org.id}`;
    const lease = randomUUID();
    let taken: unknown;
    try {
      taken = await this.redis.eval(TAKE_SLOT, 1, key, this.config.UPLOADS_PER_ORG_CONCURRENT, UPLOAD_LEASE_MS, lease);
    } catch (error) {
      this.logger.warn({ err: { message: (error as Error).message } }, 'upload slots unavailable (Redis): upload not limited');
      return;
    }
    if (taken !== 1) {
      await this.refuse(
        entry,
        { limit: 'uploads_per_org', subject: org.id },
        new RetryLaterError(
          'concurrent_uploads_exceeded',
          `the organization may run ${this.config.UPLOADS_PER_ORG_CONCURRENT} uploads at once; retry later`,
          UPLOAD_RETRY_AFTER_SECONDS,
        ),
      );
    }
    const renewal = setInterval(() => {
      this.redis.eval(RENEW_SLOT, 1, key, UPLOAD_LEASE_MS, lease).catch(() => undefined);
    }, UPLOAD_LEASE_MS / 3);
    renewal.unref();
    whenClosed(response, () => {
      clearInterval(renewal);
      this.redis.zrem(key, lease).catch(() => undefined); // else it expires with its lease
    });
  }

  /**
   * Throws `error`; audits it first when it is the first refusal of `limit` for `subject` within
   * the window (across replicas). Without a window of its own, the window is a minute.
   */
  async refuse(entry: () => RefusalEntry, refusal: { limit: string; subject: string; windowMs?: number }, error: RetryLaterError): Promise<never> {
    const windowMs = refusal.windowMs ?? REFUSAL_AUDIT_WINDOW_SECONDS * 1000;
    const first = await this.auditedRefusals
      .consume(`${refusal.limit}:${refusal.subject}`, 1, { customDuration: Math.max(1, Math.ceil(windowMs / 1000)) })
      .then(
        () => true,
        () => false,
      );
    if (first) {
      const { automatic, ...spec } = entry();
      const target = () => ({ ...automatic!.target(), limit: refusal.limit, subject: refusal.subject });
      await this.audit.recordFailure({ ...spec, automatic: { action: automatic!.action, target } }, error);
    }
    throw error;
  }

  onApplicationShutdown(): void {
    this.redis.disconnect();
  }

  private limiter(name: string, points: number, duration: number): RateLimiterRedis {
    return new RateLimiterRedis({
      storeClient: this.redis,
      keyPrefix: `${this.config.REDIS_KEY_PREFIX}:limits:${name}`,
      points,
      duration,
      rejectIfRedisNotReady: true,
      insuranceLimiter: new RateLimiterMemory({ points, duration }),
    });
  }
}

/** The 429 of a rate limit: Retry-After when the window ends. */
function retryLater(code: 'authentication_rate_limited' | 'asset_link_rate_limited', message: string, res: RateLimiterRes): RetryLaterError {
  return new RetryLaterError(code, message, Math.max(1, Math.ceil(res.msBeforeNext / 1000)));
}

/** Runs `done` once the response has closed (answered, or the client gone). */
export function whenClosed(response: ServerResponse, done: () => void): void {
  if (response.closed) done();
  else response.once('close', done);
}

/**
 * What the per-address limits count: an IPv4 address, or an IPv6 address's /64 (one host is
 * routinely given a whole /64, so single IPv6 addresses cost an attacker nothing).
 */
export function addressKey(ip: string): string {
  if (!isIPv6(ip) || /^::ffff:[\d.]+$/i.test(ip)) return ip.replace(/^::ffff:/i, '');
  const [head, tail = ''] = ip.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
