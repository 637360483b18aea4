import type { JobsOptions } from 'bullmq';
import type { RequestSource } from '@coffer/tenancy';

/**
 * Every queue and job Coffer has, with its payload type. `enqueue(name, payload)` is checked
 * against this by the compiler, and the worker refuses to start while any job here has no
 * handler. Payloads carry ids only, never secrets or content (they sit in Redis).
 */
export interface JobPayloads {
  'expire-api-keys': { orgId: string };
  /** `orgId` absent: the control plane's chain. */
  'audit-checkpoint': { orgId?: string };
  'audit-delivery': { orgId: string };
  /** Rotates the org's key if its latest version is still `fromVersion` (the sweep found it due). */
  'rotate-key': { orgId: string; fromVersion: number };
  /** Moves the org's stored data keys to the key's latest version (`version` names the run). */
  'rewrap-keys': { orgId: string; version: number };
  /** Checks the KMS and audit delivery; raises or resolves their alerts. */
  'alert-checks': Record<string, never>;
  /** `force`: an operator asked (REST or CLI); renew whatever the due date. */
  'renew-certificate': { certificateId: string; force?: boolean };
  /** Removes the objects of deleted package versions and abandoned uploads. */
  'sweep-packages': { orgId: string };
  /** Commits the org's writes queued through a KMS outage, in order (libs/spool). */
  'flush-spool': { orgId: string };
}

export type JobName = keyof JobPayloads;

/** What sits in Redis: the payload, and the enqueuing request's id, IP and user agent, if any. */
export type JobData<K extends JobName> = JobPayloads[K] & { requestSource?: RequestSource };
export type QueueName = 'maintenance';

interface JobDefinition<K extends JobName> {
  queue: QueueName;
  /**
   * Fixed id from what the job acts on: enqueuing the same work twice is a no-op. BullMQ 6
   * refuses ':' in custom ids (it separates its Redis keys), so the parts are joined by '/'.
   */
  jobId(payload: JobPayloads[K]): string;
  options?: JobsOptions;
}

export const JOBS: { [K in JobName]: JobDefinition<K> } = {
  'expire-api-keys': {
    queue: 'maintenance',
    jobId: ({ orgId }) => `expire-api-keys/${orgId}`,
  },
  'audit-checkpoint': {
    queue: 'maintenance',
    jobId: ({ orgId }) => `audit-checkpoint/${orgId ?? 'control'}`,
  },
  'audit-delivery': {
    queue: 'maintenance',
    jobId: ({ orgId }) => `audit-delivery/${orgId}`,
  },
  'rotate-key': {
    queue: 'maintenance',
    jobId: ({ orgId, fromVersion }) => `rotate-key/${orgId}/${fromVersion}`,
  },
  'rewrap-keys': {
    queue: 'maintenance',
    jobId: ({ orgId, version }) => `rewrap-keys/${orgId}/${version}`,
  },
  'alert-checks': {
    queue: 'maintenance',
    jobId: () => 'alert-checks',
  },
  'renew-certificate': {
    queue: 'maintenance',
    jobId: ({ certificateId }) => `renew-certificate/${certificateId}`,
    // A failed order is recorded with its next attempt in the database and the job completes:
    // the schedule retries from there, with the backoff the CA's rate limits need. A job that
    // fails otherwise (database down) is not kept, so it blocks neither the next tick nor an
    // operator's forced renewal for an hour; the worker's log has its error.
    options: { attempts: 1, removeOnFail: true },
  },
  'sweep-packages': {
    queue: 'maintenance',
    jobId: ({ orgId }) => `sweep-packages/${orgId}`,
  },
  'flush-spool': {
    queue: 'maintenance',
    jobId: ({ orgId }) => `flush-spool/${orgId}`,
    // A flush stopped by the KMS going away again keeps its writes pending; the schedule retries
    // once its health probe (with backoff) sees the KMS back, so a failed job is not kept.
    options: { attempts: 1, removeOnFail: true },
  },
};

export const QUEUE_NAMES: readonly QueueName[] = [...new Set(Object.values(JOBS).map((j) => j.queue))];

export const DEFAULT_JOB_OPTIONS: JobsOptions = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 1000 },
  // A completed job is removed so that the next sweep can enqueue the same id again; a failed
  // one is kept an hour for inspection (and meanwhile blocks duplicates of that same work).
  removeOnComplete: true,
  removeOnFail: { age: 3600, count: 1000 },
};
