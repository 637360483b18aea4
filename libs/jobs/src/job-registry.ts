import type { JobsOptions } from 'bullmq';
import type { AppConfig } from '@coffer/config';
import type { RequestSource } from '@coffer/tenancy';

/** The payload of a job that acts on nothing in particular: `{}`. */
type NoPayload = Record<string, never>;

/**
 * Every queue and job Coffer has, with its payload type. `enqueue(name, payload)` is checked
 * against this by the compiler, and the worker refuses to start while any job here has no
 * handler. Payloads carry ids only, never secrets or content (they sit in Redis). A payload with
 * `orgId` names an org: the worker runs the job only while that org is active, on its audit chain.
 */
export interface JobPayloads {
  'expire-api-keys': { orgId: string };
  /** Finds the orgs with API keys past their expiry and enqueues `expire-api-keys` for each. */
  'find-expired-api-keys': NoPayload;
  /** `orgId` absent: the control plane's chain. */
  'audit-checkpoint': { orgId?: string };
  'audit-delivery': { orgId: string };
  /** Finds the orgs with an audit destination and enqueues `audit-delivery` for each. */
  'find-audit-deliveries': NoPayload;
  /** Rotates the org's key if its latest version is still `fromVersion` (the sweep found it due). */
  'rotate-key': { orgId: string; fromVersion: number };
  /** Moves the org's stored data keys to the key's latest version (`version` names the run). */
  'rewrap-keys': { orgId: string; version: number };
  /**
   * Gives new orgs a rotation date, enqueues `rotate-key` for each key past it and `rewrap-keys`
   * wherever a rewrap is unfinished (or old versions await retirement).
   */
  'find-key-rotations': NoPayload;
  /** Checks the KMS and audit delivery; raises or resolves their alerts. */
  'alert-checks': NoPayload;
  /** `force`: an operator asked (REST or CLI); renew whatever the due date. */
  'renew-certificate': { certificateId: string; force?: boolean };
  /** Registers the configured ACME certificate; enqueues `renew-certificate` for each one due. */
  'find-certificate-renewals': NoPayload;
  /** Removes the objects of deleted package versions and abandoned uploads. */
  'sweep-packages': { orgId: string };
  /** Commits the org's writes queued through a KMS outage, in order (libs/spool). */
  'flush-spool': { orgId: string };
  /**
   * Finds the orgs with queued writes and, once a health probe sees the KMS answer (backing off
   * while it does not), enqueues `flush-spool` for each.
   */
  'find-spool-flushes': NoPayload;
  /**
   * Registers (or resumes) the org with this slug and creates its database, schema, keys and
   * grants, then activates it: the provisioner's only job, the only one with owner credentials.
   */
  'provision-org': { slug: string; name: string; requestId: string };
}

export type JobName = keyof JobPayloads;

/** What sits in Redis: the payload, and the enqueuing request's id, IP and user agent, if any. */
export type JobData<K extends JobName> = JobPayloads[K] & { requestSource?: RequestSource };
/**
 * `maintenance`: the worker's. `provisioning`: the provisioner's alone, so that the process
 * holding the owner's credentials runs nothing but provisioning.
 */
export type QueueName = 'maintenance' | 'provisioning';

/** The AppConfig settings that hold a cron expression (seconds first), e.g. `KEY_ROTATION_CRON`. */
export type CronSetting = { [S in keyof AppConfig]-?: S extends `${string}_CRON` ? S : never }[keyof AppConfig];

/**
 * Whom a tick of a job's schedule enqueues it for:
 * - `global`: one job, payload `{}`;
 * - `per-org`: one job per active org, payload `{ orgId }`;
 * - `global-and-per-org`: both.
 */
export type FanOut = 'global' | 'per-org' | 'global-and-per-org';
export const FAN_OUTS: readonly FanOut[] = ['global', 'per-org', 'global-and-per-org'];

/** The fan-outs a payload type admits: `global` needs `{}` to be a payload, `per-org` `{ orgId }`. */
type FanOutOf<P> =
  | ({} extends P ? 'global' : never)
  | ({ orgId: string } extends P ? 'per-org' : never)
  | ({} extends P ? ({ orgId: string } extends P ? 'global-and-per-org' : never) : never);

export interface JobSchedule {
  /** The setting holding the cron expression. */
  cron: CronSetting;
  fanOut: FanOut;
}

interface JobDefinition<K extends JobName> {
  queue: QueueName;
  /**
   * Fixed id from what the job acts on: enqueuing the same work twice is a no-op. BullMQ 6
   * refuses ':' in custom ids (it separates its Redis keys), so the parts are joined by '/'.
   */
  jobId(payload: JobPayloads[K]): string;
  options?: JobsOptions;
  /**
   * The worker enqueues the job on this cron, and does nothing else on a tick: the due state
   * lives in PostgreSQL, so a failed or missed tick is caught up by the next, and the fixed job
   * ids mean that two workers ticking together enqueue the work once.
   */
  schedule?: { cron: CronSetting; fanOut: FanOutOf<JobPayloads[K]> };
  /**
   * false: the job runs without a unit of work, each query committing at once. Otherwise (the
   * default) it runs in one transaction per database, committed with its audit entries.
   */
  transactional?: false;
}

/**
 * A job that finds due work and enqueues the jobs that do it. Outside a transaction: it reads
 * every org's database without holding one open per org, and what it writes (a due date, a
 * certificate's row) is committed before the jobs it enqueues look for it. A failed one is
 * neither retried nor kept: the next tick runs it again, and the worker's log has the error.
 */
const FINDER = { transactional: false, options: { attempts: 1, removeOnFail: true } } as const;

export const JOBS: { [K in JobName]: JobDefinition<K> } = {
  'expire-api-keys': {
    queue: 'maintenance',
    jobId: ({ orgId }) => `expire-api-keys/${orgId}`,
  },
  'find-expired-api-keys': {
    queue: 'maintenance',
    jobId: () => 'find-expired-api-keys',
    schedule: { cron: 'EXPIRE_API_KEYS_CRON', fanOut: 'global' },
    ...FINDER,
  },
  'audit-checkpoint': {
    queue: 'maintenance',
    jobId: ({ orgId }) => `audit-checkpoint/${orgId ?? 'control'}`,
    // The control plane's chain and each org's. The job signs only a head that moved, so an idle
    // chain costs a query, not a KMS call.
    schedule: { cron: 'AUDIT_CHECKPOINT_CRON', fanOut: 'global-and-per-org' },
  },
  'audit-delivery': {
    queue: 'maintenance',
    jobId: ({ orgId }) => `audit-delivery/${orgId}`,
  },
  'find-audit-deliveries': {
    queue: 'maintenance',
    jobId: () => 'find-audit-deliveries',
    schedule: { cron: 'AUDIT_DELIVERY_CRON', fanOut: 'global' },
    ...FINDER,
  },
  'rotate-key': {
    queue: 'maintenance',
    jobId: ({ orgId, fromVersion }) => `rotate-key/${orgId}/${fromVersion}`,
  },
  'rewrap-keys': {
    queue: 'maintenance',
    jobId: ({ orgId, version }) => `rewrap-keys/${orgId}/${version}`,
  },
  'find-key-rotations': {
    queue: 'maintenance',
    jobId: () => 'find-key-rotations',
    schedule: { cron: 'KEY_ROTATION_CRON', fanOut: 'global' },
    ...FINDER,
  },
  'alert-checks': {
    queue: 'maintenance',
    // One job id: ticks that overlap a slow check enqueue nothing.
    jobId: () => 'alert-checks',
    schedule: { cron: 'ALERT_CHECK_CRON', fanOut: 'global' },
  },
  'renew-certificate': {
    queue: 'maintenance',
    jobId: ({ certificateId }) => `renew-certificate/${certificateId}`,
    // A failed order is recorded with its next attempt in the database and the job completes:
    // the finder retries from there, with the backoff the CA's rate limits need. A job that
    // fails otherwise (database down) is not kept, so it blocks neither the next tick nor an
    // operator's forced renewal for an hour; the worker's log has its error.
    options: { attempts: 1, removeOnFail: true },
  },
  'find-certificate-renewals': {
    queue: 'maintenance',
    jobId: () => 'find-certificate-renewals',
    schedule: { cron: 'TLS_RENEWAL_CRON', fanOut: 'global' },
    ...FINDER,
  },
  'sweep-packages': {
    queue: 'maintenance',
    jobId: ({ orgId }) => `sweep-packages/${orgId}`,
    schedule: { cron: 'PACKAGE_SWEEP_CRON', fanOut: 'per-org' },
  },
  'flush-spool': {
    queue: 'maintenance',
    jobId: ({ orgId }) => `flush-spool/${orgId}`,
    // A flush stopped by the KMS going away again keeps its writes pending; the finder retries
    // once its health probe (with backoff) sees the KMS back, so a failed job is not kept.
    options: { attempts: 1, removeOnFail: true },
  },
  'find-spool-flushes': {
    queue: 'maintenance',
    jobId: () => 'find-spool-flushes',
    schedule: { cron: 'SPOOL_FLUSH_CRON', fanOut: 'global' },
    ...FINDER,
  },
  'provision-org': {
    queue: 'provisioning',
    // One job per request: its waiter reads its own result (whether this request created the
    // org); the provisioner serializes creations of one slug itself.
    jobId: ({ slug, requestId }) => `provision-org/${slug}/${requestId}`,
    // Owner connections of its own, no unit of work. One attempt: the API waiting on it answers
    // with the error, and a repeated POST enqueues another (every step is idempotent). A
    // finished job is kept a while so that a waiter that polls late still reads its result.
    transactional: false,
    options: { attempts: 1, removeOnComplete: { age: 3600 }, removeOnFail: { age: 3600 } },
  },
};

export const QUEUE_NAMES: readonly QueueName[] = [...new Set(Object.values(JOBS).map((j) => j.queue))];

export const DEFAULT_JOB_OPTIONS: JobsOptions = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 1000 },
  // A completed job is removed so that the next tick can enqueue the same id again; a failed
  // one is kept an hour for inspection (and meanwhile blocks duplicates of that same work).
  removeOnComplete: true,
  removeOnFail: { age: 3600, count: 1000 },
};
