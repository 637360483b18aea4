import { isIP } from 'node:net';
import { z } from 'zod';

/**
 * Every environment variable Coffer reads, in one place. `.env.example` and deploy/compose list
 * the same names; a test keeps them in step. Variables marked secret are never logged.
 */
const bool = z
  .enum(['true', 'false', '1', '0'])
  .transform((v) => v === 'true' || v === '1');
const port = z.coerce.number().int().min(0).max(65535);
const bytes = z.coerce.number().int().positive();
const postgresUrl = z.url({ protocol: /^postgres(ql)?$/ });
/** A host name, an IP address (IPv6 without brackets) or a CIDR. */
const allowedHost = (entry: string) => {
  const [network, prefix, ...rest] = entry.split('/');
  const bits = isIP(network) === 4 ? 32 : isIP(network) === 6 ? 128 : 0;
  if (prefix !== undefined) return !rest.length && bits > 0 && /^\d{1,3}$/.test(prefix) && Number(prefix) <= bits;
  return bits > 0 || /^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$/i.test(network);
};

export const configSchema = z.object({
  COFFER_ENV: z.enum(['production', 'local', 'test']).default('production'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /**
   * Error tracking: unexpected errors (API 5xx, failed jobs, start-up and CLI failures) go to this
   * Sentry or GlitchTip project, scrubbed of tokens, keys, e-mail addresses and bodies
   * (docs/security.md). Errors only, no tracing. Unset: nothing is sent.
   */
  SENTRY_DSN: z.url({ protocol: /^https?$/ }).optional(),
  /** The environment the errors are filed under; COFFER_ENV when unset. */
  SENTRY_ENVIRONMENT: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/)
    .optional(),

  HTTP_HOST: z.string().min(1).default('127.0.0.1'),
  /** Plain HTTP: ACME HTTP-01 challenges and redirects to HTTPS; the API itself when TLS_MODE=off. */
  HTTP_PORT: port.default(8080),
  /** The API over TLS (unless TLS_MODE=off). */
  HTTPS_PORT: port.default(8443),
  /** The HTTPS port clients see (redirect targets), when a port mapping differs from HTTPS_PORT. */
  HTTPS_PUBLIC_PORT: port.optional(),
  /** Plain HTTP requests get 308 to HTTPS; false answers 403 https_required instead. */
  HTTP_REDIRECT_TO_HTTPS: bool.default(true),
  HTTP_BODY_LIMIT_BYTES: bytes.default(1024 * 1024),
  /**
   * On SIGTERM the API refuses new requests (503) and lets those in flight finish for this long,
   * then closes what is still open. Keep it below the orchestrator's kill timeout (compose: 30 s).
   */
  SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(600_000).default(25_000),
  /** Comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For is believed. */
  TRUSTED_PROXIES: z.string().default(''),

  /**
   * Where the certificate comes from: `internal-ca` (a CA of this installation, generated under
   * TLS_DIR), `files` (TLS_CERT_FILE/TLS_KEY_FILE), `acme` (Let's Encrypt or another ACME CA,
   * HTTP-01 on HTTP_PORT), or `off` (plain HTTP only, behind a TLS-terminating proxy, or in tests).
   */
  TLS_MODE: z.enum(['internal-ca', 'files', 'acme', 'off']).default('internal-ca'),
  /** Comma-separated names the certificate is for; the first is the redirect target. */
  TLS_DOMAINS: z.string().min(1).default('localhost'),
  /** Generated keys and certificates (internal CA, ACME account and certificates), mode 0700. */
  TLS_DIR: z.string().min(1).default('.coffer/tls'),
  /** PEM certificate chain (leaf first) and private key, for TLS_MODE=files. Re-read when they change. */
  TLS_CERT_FILE: z.string().min(1).optional(),
  TLS_KEY_FILE: z.string().min(1).optional(),
  /** How often the certificate files are checked for a new certificate, and renewal for its due date. */
  TLS_RELOAD_INTERVAL_MS: z.coerce.number().int().min(100).max(86_400_000).default(60_000),
  ACME_DIRECTORY_URL: z.url({ protocol: /^https$/ }).default('https://acme-v02.api.letsencrypt.org/directory'),
  /** Contact address of the ACME account (the CA's expiry notices). */
  ACME_EMAIL: z.email().optional(),
  /** Fetch our own challenge before asking the CA to (saves rate-limited failures); false offline. */
  ACME_SELF_CHECK: bool.default(true),
  /**
   * Retries of one ACME request on a network error, 429 or 5xx (acme-client waits 5 s, 10 s, ...
   * between them) before the renewal counts as failed and backs off (TLS_RENEWAL_RETRY_MS).
   */
  ACME_HTTP_RETRIES: z.coerce.number().int().min(0).max(10).default(3),
  /** How often the worker looks for certificates due for renewal (6 fields, seconds first). */
  TLS_RENEWAL_CRON: z.string().min(1).default('0 * * * * *'),
  /** First retry delay of a failed renewal; it doubles per failure, up to 6 h (less for short certificates). */
  TLS_RENEWAL_RETRY_MS: z.coerce.number().int().min(100).max(86_400_000).default(300_000),

  /**
   * Comma-separated http(s) URLs that receive alerts as JSON POSTs (the Alertmanager webhook
   * body, libs/alerts/README.md): once when an alert fires, once when it resolves.
   */
  ALERT_WEBHOOK_URLS: z
    .string()
    .default('')
    .refine((v) => v.split(',').map((u) => u.trim()).filter(Boolean).every((u) => /^https?:\/\/[^\s]+$/.test(u) && URL.canParse(u)), {
      message: 'comma-separated http(s) URLs',
    }),
  /**
   * Comma-separated host names, IP addresses and CIDRs that outbound calls (audit delivery to an
   * org's bucket, alert webhooks, ACME) may reach although the egress policy refuses them:
   * loopback, private, link-local, unique-local, CGNAT, multicast and unspecified addresses, and
   * single-label names such as compose services (docs/security.md). Empty: none.
   */
  OUTBOUND_ALLOWED_HOSTS: z
    .string()
    .default('')
    .refine((v) => v.split(',').map((h) => h.trim()).filter(Boolean).every(allowedHost), {
      message: 'comma-separated host names, IP addresses and CIDRs',
    }),
  /** How often the worker checks the KMS and audit delivery and raises or resolves their alerts. */
  ALERT_CHECK_CRON: z.string().min(1).default('*/15 * * * * *'),
  /** An org's audit entries waiting this long for its bucket raise AuditDeliveryLagging. */
  AUDIT_DELIVERY_LAG_ALERT_SECONDS: z.coerce.number().int().min(60).default(3600),
  ALERT_WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(5000),
  /** More writes than this queued in one org's spool (the KMS down for long) raise SpoolGrowing. */
  SPOOL_PENDING_WRITES_ALERT: z.coerce.number().int().min(0).default(100),
  /**
   * How often the worker looks for queued writes and, if the KMS answers, flushes them. While it
   * does not, probes back off (doubling, at most 5 minutes apart).
   */
  SPOOL_FLUSH_CRON: z.string().min(1).default('*/10 * * * * *'),

  /**
   * Owner role: only `coffer migrate` and the provisioner hold it (they run migrations and create
   * org databases). The API and the worker refuse to start with it in their environment.
   */
  DATABASE_OWNER_URL: postgresUrl.optional(),
  /** App role: the only credentials request handlers and jobs use. */
  DATABASE_APP_URL: postgresUrl,
  /**
   * App-role connections one process (API or worker) holds at most, control plane and every org
   * together; a request finding them all in use waits DATABASE_ACQUIRE_TIMEOUT_MS, then 503
   * database_busy. Size it with docs/database-sizing.md: the start refuses budgets that could
   * exceed the server's max_connections.
   */
  DATABASE_CONNECTION_BUDGET: z.coerce.number().int().min(2).max(10_000).default(20),
  /** Of the budget, connections kept for the control plane (org registry, local KMS, tokens). */
  DATABASE_CONTROL_CONNECTIONS: z.coerce.number().int().min(1).max(1000).default(3),
  /** Most of the budget one org may hold in one process: a busy org cannot starve the others. */
  DATABASE_ORG_CONNECTION_SHARE: z.coerce.number().int().min(1).max(1000).default(5),
  /** How long a request waits for a connection before 503 database_busy. */
  DATABASE_ACQUIRE_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(5000),
  /** A connection idle this long is closed (its slot goes back to the budget). */
  DATABASE_IDLE_TIMEOUT_MS: z.coerce.number().int().min(100).max(3_600_000).default(10_000),
  /** API and worker processes (every replica) using this PostgreSQL server: the sizing check at start. */
  COFFER_PROCESS_COUNT: z.coerce.number().int().min(1).max(1000).default(2),
  /** Connections kept free for the rest: the CLI, compose init, backups, psql (sizing check only). */
  DATABASE_TOOLS_CONNECTIONS: z.coerce.number().int().min(0).max(10_000).default(5),
  /** Org databases are named <prefix><orgId>. */
  ORG_DATABASE_PREFIX: z
    .string()
    .regex(/^[a-z][a-z0-9_]{0,30}$/)
    .default('coffer_org_'),
  /**
   * How long `POST /organizations` waits for the provisioner before it answers 202 with the
   * org's status URL instead of 201.
   */
  ORG_PROVISION_WAIT_MS: z.coerce.number().int().min(0).max(120_000).default(20_000),

  REDIS_URL: z.url({ protocol: /^rediss?$/ }).default('redis://127.0.0.1:6379'),
  REDIS_KEY_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,64}$/)
    .default('coffer'),

  /**
   * How long an API key's stored credentials are reused for authentication. Revocation in the
   * same process is immediate; other replicas notice within this time. 0 reads them every request.
   */
  API_KEY_CACHE_TTL_MS: z.coerce.number().int().min(0).max(60_000).default(2000),
  /**
   * Abuse limits, counted in Redis (shared by every replica) over RATE_LIMIT_AUTH_WINDOW_SECONDS:
   * failed authentications from one client address (TRUSTED_PROXIES decides which). Past it, that
   * address gets 429 authentication_rate_limited, valid key or not, before any database lookup.
   * High enough for a NAT of clients with stale keys; it bounds lookups a flood can cause.
   */
  RATE_LIMIT_AUTH_FAILURES_PER_IP: z.coerce.number().int().min(1).default(3000),
  /**
   * Failed authentications presenting one key id (or platform token id), from any address. Only
   * failures count, so the key's owner is unaffected until someone guesses at it; then the key
   * is refused for the rest of the window: the price of stopping a distributed guess at one key.
   */
  RATE_LIMIT_AUTH_FAILURES_PER_KEY: z.coerce.number().int().min(1).default(20),
  RATE_LIMIT_AUTH_WINDOW_SECONDS: z.coerce.number().int().min(1).max(86_400).default(900),
  /** Anonymous asset-link requests from one client address per RATE_LIMIT_ASSET_LINKS_WINDOW_SECONDS (429 past it). */
  RATE_LIMIT_ASSET_LINKS_PER_IP: z.coerce.number().int().min(1).default(600),
  RATE_LIMIT_ASSET_LINKS_WINDOW_SECONDS: z.coerce.number().int().min(1).max(86_400).default(60),
  /**
   * Uploads one org may have running at once, on all replicas together (429 past it). A slot is a
   * lease in Redis renewed while its upload runs: a crashed replica's slots come back in a minute.
   */
  UPLOADS_PER_ORG_CONCURRENT: z.coerce.number().int().min(1).max(1000).default(4),
  /**
   * Requests of one org this API process works on at once; more wait their turn, each org in a
   * queue of its own, so a busy org cannot hold the process (event loop, CPU) from the others.
   */
  ORG_CONCURRENT_REQUESTS: z.coerce.number().int().min(1).max(10_000).default(8),
  /** Requests of one org that may wait for a turn (past it, 429 organization_busy at once)... */
  ORG_QUEUED_REQUESTS: z.coerce.number().int().min(0).max(100_000).default(64),
  /** ...and how long one waits before 429 organization_busy. */
  ORG_QUEUE_TIMEOUT_MS: z.coerce.number().int().min(0).max(120_000).default(10_000),

  /** Where the platform-admin bootstrap token is written, once, at first start (mode 0600). */
  BOOTSTRAP_TOKEN_FILE: z.string().min(1).default('.coffer/bootstrap-token'),
  /** Cron (6 fields, with seconds) of the sweep that marks expired API keys. */
  EXPIRE_API_KEYS_CRON: z.string().min(1).default('0 * * * * *'),
  /** How long a running job's lock lasts without renewal: a crashed worker's job resumes after it. */
  JOB_LOCK_MS: z.coerce.number().int().min(1000).max(600_000).default(30_000),
  /**
   * How often each audit chain's head is signed and anchored outside PostgreSQL (seconds field
   * first). Entries newer than the last anchor are protected by the hash chain alone: this is
   * the window a database owner can rewrite unnoticed (docs/security.md).
   */
  AUDIT_CHECKPOINT_CRON: z.string().min(1).default('0 * * * * *'),
  /**
   * With the s3 storage driver: each checkpoint's anchor object is locked for this many days
   * (S3 object lock, compliance mode; the bucket must have been created with object lock).
   * Unset: no retention is asked for (the bucket's default retention, if any, applies).
   */
  AUDIT_ANCHOR_RETENTION_DAYS: z.coerce.number().int().min(1).max(36_500).optional(),
  /** How often each org's new audit entries are shipped to its bucket, if it configured one. */
  AUDIT_DELIVERY_CRON: z.string().min(1).default('*/30 * * * * *'),
  AUDIT_DELIVERY_BATCH_SIZE: z.coerce.number().int().min(1).max(10000).default(1000),

  /** Where org keys live: `local` (master key + wrapped keys in PostgreSQL) or `vault` (transit). */
  KMS_PROVIDER: z.enum(['local', 'vault']).default('local'),
  /** local: a file holding the 256-bit master key (32 raw bytes or base64). */
  KMS_LOCAL_MASTER_KEY_FILE: z.string().min(1).optional(),
  /** local: the master key itself, base64 (32 bytes), when it comes from a secret store. */
  KMS_LOCAL_MASTER_KEY: z.string().min(1).optional(),
  KMS_VAULT_ADDR: z.url({ protocol: /^https?$/ }).optional(),
  /** vault: a token, or an AppRole (role id + secret id) to log in with. */
  KMS_VAULT_TOKEN: z.string().min(1).optional(),
  KMS_VAULT_ROLE_ID: z.string().min(1).optional(),
  KMS_VAULT_SECRET_ID: z.string().min(1).optional(),
  /**
   * vault: a file holding the AppRole secret id instead, read again at every login, so that a
   * secret id renewed there (by `coffer unseal --watch` in compose, ADR 0011) takes effect without
   * a restart. Wins over KMS_VAULT_SECRET_ID.
   */
  KMS_VAULT_SECRET_ID_FILE: z.string().min(1).optional(),
  KMS_VAULT_MOUNT: z
    .string()
    .regex(/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/)
    .default('transit'),
  /** Prepended to every key name in Vault, so one Vault can serve several installations. */
  KMS_VAULT_KEY_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]*$/)
    .default(''),
  KMS_VAULT_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(5000),
  /** Unwrapped data keys are kept in memory at most this long and for this many uses. */
  KMS_DEK_CACHE_MAX_AGE_SECONDS: z.coerce.number().int().min(0).max(86_400).default(300),
  KMS_DEK_CACHE_MAX_USES: z.coerce.number().int().min(1).default(10_000),
  KMS_DEK_CACHE_MAX_ENTRIES: z.coerce.number().int().min(0).max(1_000_000).default(1000),
  /** Prometheus metrics, plain HTTP on their own port: keep it off the public network. */
  METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  METRICS_PORT: port.default(9464),
  /**
   * The worker's own listener (its job metrics and `GET /health`), on METRICS_HOST. Unset:
   * METRICS_PORT + 1 (0 stays 0, a free port), so an API and a worker on one machine never clash.
   */
  WORKER_METRICS_PORT: port.optional(),
  /** Each org key gets a new version this often; the worker's sweep finds keys that are due. */
  KEY_ROTATION_DAYS: z.coerce.number().int().min(1).max(3650).default(90),
  KEY_ROTATION_CRON: z.string().min(1).default('0 7 * * * *'),
  /** Wrapped data keys moved to a key's latest version per batch of the rewrap job. */
  KEY_REWRAP_BATCH_SIZE: z.coerce.number().int().min(1).max(10_000).default(500),
  /** Once rewrap leaves nothing on older versions, retire them (min_decryption_version). */
  KEY_RETIRE_OLD_VERSIONS: bool.default(false),

  /** Where KB package objects go: `filesystem` (STORAGE_DIR, the embedded default) or `s3`. */
  STORAGE_DRIVER: z.enum(['filesystem', 's3']).default('filesystem'),
  STORAGE_DIR: z.string().min(1).default('.coffer/storage'),
  /** s3: the server, `https://s3.example.com` or `http://minio:9000` (path-style requests). */
  S3_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  S3_BUCKET: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/)
    .optional(),
  S3_ACCESS_KEY: z.string().min(1).optional(),
  S3_SECRET_KEY: z.string().min(1).optional(),
  S3_REGION: z.string().min(1).default('us-east-1'),
  /** Largest package version accepted (bytes of plaintext); more answers 413 package_too_large. */
  PACKAGE_MAX_BYTES: bytes.default(5 * 1024 ** 3),
  /** Plaintext bytes per sealed segment: the unit of authentication, of Range reads and of memory. */
  PACKAGE_SEGMENT_BYTES: z.coerce.number().int().min(1024).max(16 * 1024 ** 2).default(64 * 1024),
  /** Plaintext bytes per chunk object (rounded down to whole segments): one single PUT each. */
  PACKAGE_CHUNK_BYTES: z.coerce.number().int().min(1024).max(64 * 1024 ** 2).default(4 * 1024 ** 2),
  /** An upload not finished after this long is abandoned: the sweep collects its chunks. */
  PACKAGE_UPLOAD_STALE_SECONDS: z.coerce.number().int().min(1).default(6 * 3600),
  /** How often the worker collects chunks of abandoned uploads and deleted versions. */
  PACKAGE_SWEEP_CRON: z.string().min(1).default('0 */10 * * * *'),
  /** Signed asset links: lifetime when the request names none, and the longest allowed. */
  PACKAGE_LINK_DEFAULT_TTL_SECONDS: z.coerce.number().int().min(1).default(900),
  PACKAGE_LINK_MAX_TTL_SECONDS: z.coerce.number().int().min(1).max(30 * 86_400).default(86_400),
}).superRefine((config, ctx) => {
  if (config.TLS_MODE === 'acme' && config.TLS_DOMAINS.split(',').some((d) => /^(localhost|[\d.]+|.*:.*)$/.test(d.trim()))) {
    ctx.addIssue({ code: 'custom', path: ['TLS_DOMAINS'], message: 'ACME needs public DNS names (not localhost or IP addresses)' });
  }
  if (config.STORAGE_DRIVER === 's3') {
    for (const key of ['S3_ENDPOINT', 'S3_BUCKET', 'S3_ACCESS_KEY', 'S3_SECRET_KEY'] as const) {
      if (!config[key]) ctx.addIssue({ code: 'custom', path: [key], message: 'required when STORAGE_DRIVER=s3' });
    }
  }
  if (config.PACKAGE_CHUNK_BYTES < config.PACKAGE_SEGMENT_BYTES) {
    ctx.addIssue({ code: 'custom', path: ['PACKAGE_CHUNK_BYTES'], message: 'must hold at least one segment (PACKAGE_SEGMENT_BYTES)' });
  }
  if (config.DATABASE_CONTROL_CONNECTIONS >= config.DATABASE_CONNECTION_BUDGET) {
    ctx.addIssue({ code: 'custom', path: ['DATABASE_CONTROL_CONNECTIONS'], message: 'must leave some of DATABASE_CONNECTION_BUDGET to orgs' });
  } else if (config.DATABASE_ORG_CONNECTION_SHARE > config.DATABASE_CONNECTION_BUDGET - config.DATABASE_CONTROL_CONNECTIONS) {
    ctx.addIssue({
      code: 'custom',
      path: ['DATABASE_ORG_CONNECTION_SHARE'],
      message: 'at most DATABASE_CONNECTION_BUDGET - DATABASE_CONTROL_CONNECTIONS',
    });
  }
  if (config.TLS_MODE === 'files') {
    for (const key of ['TLS_CERT_FILE', 'TLS_KEY_FILE'] as const) {
      if (!config[key]) ctx.addIssue({ code: 'custom', path: [key], message: 'required when TLS_MODE=files' });
    }
  }
});

export type AppConfig = z.infer<typeof configSchema>;
export type ConfigKey = keyof AppConfig;

export const SECRET_KEYS: ReadonlySet<ConfigKey> = new Set<ConfigKey>([
  'DATABASE_OWNER_URL',
  'DATABASE_APP_URL',
  'REDIS_URL',
  'KMS_LOCAL_MASTER_KEY',
  'KMS_VAULT_TOKEN',
  'KMS_VAULT_SECRET_ID',
  // Webhook URLs often carry their credential (Slack, Teams, PagerDuty).
  'ALERT_WEBHOOK_URLS',
  'S3_SECRET_KEY',
  // Its key is public by design, but it lets anyone file events into the project.
  'SENTRY_DSN',
]);

export const CONFIG_KEYS = Object.keys(configSchema.shape) as ConfigKey[];
