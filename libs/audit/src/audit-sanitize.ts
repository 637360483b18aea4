import { Counter } from 'prom-client';
import type { NewEntry } from './audit-chain';

/**
 * Entries PostgreSQL cannot take as written (a NUL or a lone surrogate in a jsonb or text value,
 * a value over one of its limits) are appended in a sanitized form rather than dropped: control
 * characters and lone surrogates written out as `\uXXXX` text, strings over a limit cut with a
 * marker, and `sanitized: true` in the body. The log then keeps a trace of the event, marked.
 */

/** Longest string kept whole in a sanitized entry; longer ones are cut and marked. */
export const SANITIZED_STRING_MAX = 64 * 1024;
const ACTION_MAX = 200;
export const TRUNCATED_MARKER = '…[truncated]';

/** What PostgreSQL refuses in jsonb or text whatever the size: NUL and lone UTF-16 surrogates. */
const REFUSED = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const ESCAPED = /[\u0000-\u001f\u007f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * Appends of every entry the audit chain could not take, even sanitized: counted here (and
 * logged where they happen) so that an event whose only other trace is the app log is visible.
 * Registered on the metrics listener by libs/metrics.
 */
export const auditWriteFailures = new Counter({
  name: 'coffer_audit_write_failures_total',
  help: 'Audit entries that could not be appended to the chain, even sanitized',
  labelNames: ['kind'],
  registers: [],
});

/** The entry unchanged when PostgreSQL can take it; else sanitized (refused characters escaped). */
export function sanitizeIfRefused(entry: NewEntry): NewEntry {
  return hasRefused(entry) ? sanitizeEntry(entry) : entry;
}

/** Every string of the entry with control characters escaped and cut at a limit; flagged. */
export function sanitizeEntry(entry: NewEntry): NewEntry {
  const body = clean(entry.body) as Record<string, unknown>;
  return {
    ...entry,
    action: cut(escape(entry.action), ACTION_MAX),
    actor: clean(entry.actor) as NewEntry['actor'],
    target: clean(entry.target) as NewEntry['target'],
    requestId: entry.requestId === null ? null : cut(escape(entry.requestId), 200),
    userAgent: entry.userAgent === null ? null : cut(escape(entry.userAgent), 512),
    body: { ...body, sanitized: true },
  };
}

function hasRefused(value: unknown): boolean {
  if (typeof value === 'string') return REFUSED.test(value);
  if (Array.isArray(value)) return value.some(hasRefused);
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    return Object.entries(value).some(([key, v]) => REFUSED.test(key) || hasRefused(v));
  }
  return false;
}

function clean(value: unknown): unknown {
  if (typeof value === 'string') return cut(escape(value), SANITIZED_STRING_MAX);
  if (Array.isArray(value)) return value.map(clean);
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).map(([key, v]) => [cut(escape(key), 200), clean(v)]));
  }
  return value;
}

function escape(value: string): string {
  return value.replace(ESCAPED, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function cut(value: string, max: number): string {
  return value.length > max ? value.slice(0, max) + TRUNCATED_MARKER : value;
}
