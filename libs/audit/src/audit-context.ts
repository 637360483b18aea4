import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { AppError } from '@coffer/http';
import type { Actor, OrgRef, RequestSource } from '@coffer/tenancy';
import type { NewEntry } from './audit-chain';

/**
 * The audit API's dynamic variables, resolved when the request or job has finished (as Convex's
 * `log.vars`; libs/audit/README.md, ADR 0006): put one anywhere in the params of `audit()`.
 */
export const auditVars = {
  ip: Symbol('audit.ip'),
  userAgent: Symbol('audit.userAgent'),
  requestId: Symbol('audit.requestId'),
  /** Milliseconds since the Unix epoch when the work finished. */
  now: Symbol('audit.now'),
} as const;

export interface AuditParams {
  /** What happened, as `noun.verb`: `user.created`, `package.downloaded`. */
  action: string;
  /** What it happened to; a string is taken as `{ id }`. */
  target?: Record<string, unknown> | string;
  outcome?: 'success' | 'failure';
  [field: string]: unknown;
}

/**
 * Per request or job run, or per unit a job commits on its own (the audit requirement, ADR 0006):
 * beyond one of them the work fails and nothing of it commits.
 */
export const AUDIT_LIMITS = { entries: 500, entryBytes: 1024 * 1024, totalBytes: 4 * 1024 * 1024 } as const;

const USER_AGENT_MAX_BYTES = 512;

const VAR_NAMES = new Map<symbol, keyof typeof auditVars>(
  Object.entries(auditVars).map(([name, symbol]) => [symbol, name as keyof typeof auditVars]),
);

interface PendingEntry {
  id: string;
  occurredAt: Date;
  /** The params as JSON, dynamic values still as this scope's markers. */
  json: string;
}

/** The entries one request or job run has emitted so far, with the limits' bookkeeping. */
export class AuditScope {
  private readonly pending: PendingEntry[] = [];
  private bytes = 0;
  /** The org whose chain receives the entries, when the route or job could not say up front. */
  org?: OrgRef;
  /** What the work said about itself for its automatic entry (auditDetails), on success or failure. */
  details: Record<string, unknown> = {};
  /**
   * The string standing for each of auditVars in this scope's pending JSON. It holds a random
   * nonce of this scope, which never leaves the process: no string from a request (a path
   * parameter, a body field) can equal one, so none is ever taken for a variable.
   */
  private readonly markers: ReadonlyMap<symbol, string>;
  private readonly variables: ReadonlyMap<string, keyof typeof auditVars>;

  constructor(
    readonly actor: Actor,
    readonly source: RequestSource,
  ) {
    const nonce = randomUUID();
    const markers = [...VAR_NAMES].map(([symbol, name]) => [symbol, name, `\u0000coffer-audit-var:${nonce}:${name}`] as const);
    this.markers = new Map(markers.map(([symbol, , marker]) => [symbol, marker]));
    this.variables = new Map(markers.map(([, name, marker]) => [marker, name]));
  }

  get size(): number {
    return this.pending.length;
  }

  add(params: AuditParams): void {
    if (typeof params?.action !== 'string' || !params.action) throw new TypeError('audit() needs an action');
    const json = JSON.stringify(params, (_key, value) => (typeof value === 'symbol' ? this.marker(value) : value));
    // Measured with the dynamic values filled in: they are known already, only `now` moves.
    const bytes = Buffer.byteLength(JSON.stringify(this.resolve(json, Date.now())));
    if (this.pending.length + 1 > AUDIT_LIMITS.entries) throw limitExceeded(`more than ${AUDIT_LIMITS.entries} audit entries`);
    if (bytes > AUDIT_LIMITS.entryBytes) throw limitExceeded(`an audit entry over ${AUDIT_LIMITS.entryBytes} bytes`);
    if (this.bytes + bytes > AUDIT_LIMITS.totalBytes) throw limitExceeded(`over ${AUDIT_LIMITS.totalBytes} bytes of audit entries`);
    this.bytes += bytes;
    this.pending.push({ id: randomUUID(), occurredAt: new Date(), json });
  }

  /** The entries, dynamic values resolved now, ready for the chain. */
  entries(): NewEntry[] {
    const now = Date.now();
    return this.pending.map(({ id, occurredAt, json }) => {
      const { action, target, outcome, ...body } = this.resolve(json, now) as AuditParams;
      return {
        id,
        occurredAt,
        action,
        outcome: outcome === 'failure' ? 'failure' : 'success',
        actor: this.actor,
        target: target === undefined || target === null ? null : typeof target === 'string' ? { id: target } : target,
        ...this.source,
        body,
      };
    });
  }

  /**
   * entries(), then forgets them: what a unit committed on its own (AuditService.commitUnit)
   * takes with it, or what its rollback discards. The limits start again for the next unit.
   */
  drain(): NewEntry[] {
    const entries = this.entries();
    this.pending.length = 0;
    this.bytes = 0;
    return entries;
  }

  private marker(symbol: symbol): string {
    const marker = this.markers.get(symbol);
    if (!marker) throw new TypeError(`audit(): ${String(symbol)} is not one of auditVars`);
    return marker;
  }

  /** The pending JSON parsed, each of this scope's markers replaced by its value; every other string as it was. */
  private resolve(json: string, now: number): unknown {
    return JSON.parse(json, (_key, value) => {
      const name = typeof value === 'string' && value.charCodeAt(0) === 0 ? this.variables.get(value) : undefined;
      if (!name) return value;
      return name === 'now' ? now : name === 'ip' ? this.source.clientIp : name === 'userAgent' ? this.source.userAgent : this.source.requestId;
    });
  }
}

function limitExceeded(what: string): AppError {
  return new AppError('audit_limit_exceeded', `the request emitted ${what}; nothing was committed`);
}

const storage = new AsyncLocalStorage<AuditScope>();

export function runInAuditScope<T>(scope: AuditScope, fn: () => Promise<T>): Promise<T> {
  return storage.run(scope, fn);
}

export function currentAuditScope(): AuditScope | undefined {
  return storage.getStore();
}

/**
 * Records an audit entry for the current request or job. Entries of a mutation commit in the
 * same transaction as its change (or not at all); exceeding AUDIT_LIMITS throws
 * `audit_limit_exceeded`, failing the work. Throws outside a request or job: an entry with no
 * one to answer for it is a bug.
 */
export function audit(params: AuditParams): void {
  const scope = storage.getStore();
  if (!scope) throw new Error('audit() called outside a request or job');
  scope.add(params);
}

/**
 * Sends the current request's or job's entries to `org`'s chain: for work that learns its org
 * only from what it reads (a job's payload, a signed link's token).
 */
export function setAuditOrg(org: OrgRef): void {
  const scope = storage.getStore();
  if (!scope) throw new Error('setAuditOrg() called outside a request or job');
  scope.org = org;
}

/**
 * Adds `fields` to the body of the current request's or job's automatic entry (the one its
 * route or job gets without asking), on success and on failure alike: what was asked for (the
 * slug of an org being created), what changed (a destination's old and new place).
 */
export function auditDetails(fields: Record<string, unknown>): void {
  const scope = storage.getStore();
  if (!scope) throw new Error('auditDetails() called outside a request or job');
  Object.assign(scope.details, fields);
}

/** A User-Agent cut to at most 512 bytes of UTF-8, never in the middle of a character. */
export function truncateUserAgent(value: string | undefined): string | null {
  if (!value) return null;
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length <= USER_AGENT_MAX_BYTES) return value;
  let end = USER_AGENT_MAX_BYTES;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8');
}
