import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as Sentry from '@sentry/node';
import type { AppConfig } from '@coffer/config';

/**
 * What an error report may say about where it happened: ids and names Coffer chose, never a
 * value a client sent. Sent as tags, so they can be searched for in Sentry.
 */
export interface ErrorContext {
  /** The API's request id (the x-request-id the client was given). */
  requestId?: string;
  /** The route template (`/api/v1/organizations/:org/users`), never the raw URL. */
  route?: string;
  method?: string;
  /** A job's name and id, never its payload. */
  job?: string;
  jobId?: string;
  /** The CLI command, or the phase of a process (`start`). */
  command?: string;
  phase?: string;
}

const TAGS: Record<keyof ErrorContext, string> = {
  requestId: 'request_id',
  route: 'route',
  method: 'method',
  job: 'job',
  jobId: 'job_id',
  command: 'command',
  phase: 'phase',
};
const ALLOWED_TAGS = new Set(['service', ...Object.values(TAGS)]);

let enabled = false;

/**
 * Reports unexpected errors to a Sentry-compatible server (self-hosted Sentry, GlitchTip) when
 * SENTRY_DSN is set; otherwise the SDK is never started and nothing is sent. Errors only:
 * no tracing, sessions, breadcrumbs, client reports or automatic instrumentation (no default
 * integrations), so nothing captures requests, headers, console output or outgoing URLs. Every
 * event then goes through scrubEvent(), which keeps an allow-list of fields.
 */
export function initErrorTracking(config: Pick<AppConfig, 'SENTRY_DSN' | 'SENTRY_ENVIRONMENT' | 'COFFER_ENV'>, service: string): void {
  if (!config.SENTRY_DSN || enabled) return;
  Sentry.init({
    dsn: config.SENTRY_DSN,
    environment: config.SENTRY_ENVIRONMENT ?? config.COFFER_ENV,
    release: `coffer@${cofferVersion()}`,
    defaultIntegrations: false,
    // Causes (`error.cause`) as chained exceptions; one report for an error seen twice in a row.
    integrations: [Sentry.linkedErrorsIntegration(), Sentry.dedupeIntegration()],
    // Nothing of a request, a user, a query or a frame's variables is collected, even by an
    // integration added later.
    dataCollection: {
      userInfo: false,
      cookies: false,
      httpHeaders: false,
      httpBodies: [],
      urlQueryParams: false,
      graphQL: { document: false, variables: false },
      genAI: { inputs: false, outputs: false },
      mcp: { inputs: false, outputs: false },
      databaseQueryData: false,
      queues: false,
      stackFrameVariables: false,
      frameContextLines: 0,
    },
    includeLocalVariables: false,
    includeServerName: false,
    sendClientReports: false,
    enableRuntimeChannelInjection: false,
    // Set here so that the SDK does not read them from the environment (SENTRY_TRACES_SAMPLE_RATE,
    // SENTRY_SPOTLIGHT, SENTRY_DEBUG): no span is sampled, no copy goes to a sidecar or the console.
    tracesSampleRate: 0,
    spotlight: false,
    debug: false,
    maxBreadcrumbs: 0,
    initialScope: { tags: { service } },
    beforeBreadcrumb: () => null,
    beforeSend: (event) => scrubEvent(event),
    beforeSendTransaction: () => null,
  });
  enabled = true;
}

/** Reports an unexpected error (a no-op without SENTRY_DSN). */
export function captureError(error: unknown, context: ErrorContext = {}): void {
  if (!enabled) return;
  const tags = Object.fromEntries(
    Object.entries(context)
      .filter(([, value]) => value !== undefined)
      .map(([key, value]) => [TAGS[key as keyof ErrorContext], String(value)]),
  );
  Sentry.captureException(error, { tags });
}

/** Waits up to `timeoutMs` for queued reports to be sent: call it before process.exit(). */
export async function flushErrorTracking(timeoutMs = 2000): Promise<void> {
  if (enabled) await Sentry.flush(timeoutMs);
}

/**
 * The event as sent: an allow-list of fields (error type, redacted message, stack frames as
 * file, line and function, the tags of ErrorContext, service, release, environment, runtime).
 * Everything else is dropped: request data, user, extra, breadcrumbs, server name, modules,
 * frame variables and source lines.
 */
export function scrubEvent<E extends Sentry.Event>(event: E): E {
  const route = event.tags?.route;
  const method = event.tags?.method;
  const runtime = event.contexts?.runtime;
  return {
    event_id: event.event_id,
    timestamp: event.timestamp,
    platform: event.platform,
    level: event.level,
    type: event.type,
    release: event.release,
    environment: event.environment,
    sdk: event.sdk && { name: event.sdk.name, version: event.sdk.version },
    fingerprint: event.fingerprint,
    ...(event.message !== undefined && { message: redactSecrets(event.message) }),
    ...(route != null && { transaction: redactSecrets(method == null ? String(route) : `${String(method)} ${String(route)}`) }),
    tags: Object.fromEntries(
      Object.entries(event.tags ?? {})
        .filter(([key, value]) => ALLOWED_TAGS.has(key) && value !== undefined && value !== null)
        .map(([key, value]) => [key, redactSecrets(String(value))]),
    ),
    contexts: runtime ? { runtime: { name: runtime.name, version: runtime.version } } : {},
    exception: event.exception && {
      values: event.exception.values?.map((value) => ({
        type: value.type,
        ...(value.value !== undefined && { value: redactSecrets(value.value) }),
        mechanism: value.mechanism && {
          type: value.mechanism.type,
          handled: value.mechanism.handled,
          ...(value.mechanism.exception_id !== undefined && { exception_id: value.mechanism.exception_id }),
          ...(value.mechanism.parent_id !== undefined && { parent_id: value.mechanism.parent_id }),
          ...(value.mechanism.source !== undefined && { source: value.mechanism.source }),
        },
        stacktrace: value.stacktrace && {
          frames: value.stacktrace.frames?.map((frame) => ({
            filename: frame.filename,
            abs_path: frame.abs_path,
            module: frame.module,
            function: frame.function,
            lineno: frame.lineno,
            colno: frame.colno,
            in_app: frame.in_app,
          })),
        },
      })),
    },
  } as E;
}

/**
 * What may look like a secret in free text (an error's message), replaced: Coffer tokens,
 * bearer credentials, JWTs (signed asset links), credentials and query strings in URLs, e-mail
 * addresses, and long runs of base64 or hex (keys, token secrets, hashes). Request ids (UUIDs)
 * and Coffer's 16-hex-digit ids are kept.
 */
export function redactSecrets(text: string): string {
  return text
    .replace(/coffer_(pat|key)\.[A-Za-z0-9._-]+/g, 'coffer_$1.[redacted]')
    .replace(/\b(bearer|basic)\s+[^\s,;"']+/gi, '$1 [redacted]')
    .replace(/\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g, '[redacted-jwt]')
    .replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]*@/gi, '$1[redacted]@')
    .replace(/\b([a-z][a-z0-9+.-]*:\/\/[^\s?#]*)\?[^\s#"']*/gi, '$1?[redacted]')
    .replace(/[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g, '[redacted-email]')
    .replace(/[A-Za-z0-9+/_=-]{32,}/g, (run) => (looksLikeSecret(run) ? '[redacted]' : run));
}

/** Hex of 128 bits or more, or base64 mixing digits, capitals and small letters. */
function looksLikeSecret(run: string): boolean {
  return /^[0-9a-f]{32,}$/i.test(run) || (/[0-9]/.test(run) && /[A-Z]/.test(run) && /[a-z]/.test(run));
}

function cofferVersion(): string {
  // dist/libs/logging/src/ -> the package root, in the image as in the repository.
  return JSON.parse(readFileSync(join(__dirname, '../../../../package.json'), 'utf8')).version;
}
