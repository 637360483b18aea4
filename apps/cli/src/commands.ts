import { randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import type { INestApplicationContext } from '@nestjs/common';
import { AuditService, AuditedWork } from '@coffer/audit';
import type { AppConfig } from '@coffer/config';
import { EncryptionStatusService } from '@coffer/encryption';
import { KeyRotationService } from '@coffer/keys';
import { KMS, KmsProvider } from '@coffer/kms';
import { CreateOrganizationBody, OrgsService, presentOrgCreation } from '@coffer/orgs';
import { DatabaseService } from '@coffer/database';
import { AppError } from '@coffer/http';
import { CertificateRenewalService } from '@coffer/tls';
import { migrateInstallation } from './migrate';
import { backupInstallation } from './backup/backup';
import { restoreInstallation } from './backup/restore';
import { verifyOfflinePath } from './offline-verify';
import { exportAuditChain, openExportSink } from './audit-export';
import { waitForRewrap } from './rewrap-status';
import { UsageError } from './usage-error';
import { Actor, OrgRef, OrgRegistry, publicOrg } from '@coffer/tenancy';
import { ApiKeysService, UsersService } from '@coffer/users';

export interface CommandResult {
  output: unknown;
  /** 0 done; 2 done, but what was checked is bad (a broken chain, a service down). */
  exitCode: number;
}

export interface Invocation {
  /** The positional arguments, options removed. */
  args: string[];
  /** `--control`: the control plane's chain, where a command takes one. */
  control: boolean;
  /** Who runs the command, as the audit entries name them (`--as`, else the invoking user). */
  operator: string;
  /** The command's own `--<option> <value>`s (Command.options), when given. */
  options?: Record<string, string>;
  /** The command's own `--<flag>`s (Command.flags) that were given. */
  flags?: string[];
}

export interface Command {
  usage: string;
  summary: string;
  /** How many positional arguments it takes: [at least, at most]. */
  arity: [number, number];
  /** Takes `--control` in place of an org slug. */
  control?: boolean;
  /** Options that take a value, with what they mean (for help). */
  options?: Record<string, string>;
  /** Options that take no value (`--objects`), with what they mean (for help). */
  flags?: Record<string, string>;
  run(app: INestApplicationContext, invocation: Invocation): Promise<CommandResult>;
  /**
   * A command that needs no database, KMS or Redis: run without the application (main.ts never
   * loads the configuration or boots Nest for it), in place of `run`.
   */
  offline?(invocation: Invocation): Promise<CommandResult>;
  /**
   * A command that needs the configuration, with the owner's credentials, and builds its own
   * application (`migrate`: the CLI's would need the schema it creates), in place of `run`.
   */
  standalone?(config: AppConfig, invocation: Invocation): Promise<CommandResult>;
}

/**
 * The operator at the shell is a platform admin: they hold the database credentials. Every
 * command runs as its REST twin does (AuditService.run, same action and target), so the log
 * cannot tell a change made here from one made over HTTP except by this actor.
 */
function operatorActor(operator: string): Actor {
  return { kind: 'platform_admin', id: `cli:${operator}@${hostname()}`, via: 'cli', operator };
}

/** The operator's name by default: the invoking user (in a container, whoever `exec`s names themselves with --as). */
export function defaultOperator(): string {
  return process.env.COFFER_OPERATOR || userInfo().username;
}

function audited<T>(app: INestApplicationContext, operator: string, spec: Pick<AuditedWork<T>, 'transactional' | 'chain' | 'automatic' | 'work'>) {
  return app.get(AuditService).run({
    ...spec,
    actor: operatorActor(operator),
    source: { requestId: randomUUID(), clientIp: null, userAgent: 'coffer-cli' },
  });
}

/** `<org-slug>` or `--control` (the control plane's chain). */
async function chainOf(app: INestApplicationContext, { args: [target], control }: Invocation) {
  const audit = app.get(AuditService);
  if (control && target) throw new UsageError('name an organization slug or --control, not both');
  if (control) return { chain: audit.chain(undefined), target: null };
  if (!target) throw new UsageError('name an organization slug, or --control');
  const org = await app.get(OrgRegistry).resolve(target);
  return { chain: audit.chain(org), target: { org: target, orgId: org.id } };
}

/**
 * The target the REST twin's automatic entry names (targetOf in libs/auth): the route's
 * parameters, the org's id, and the id of what the answer names.
 */
function routeTarget(params: Record<string, string>, orgId: string, result?: unknown): Record<string, unknown> {
  const target: Record<string, unknown> = { ...params, orgId };
  const record = result && typeof result === 'object' ? (result as Record<string, unknown>) : undefined;
  const named = typeof record?.id === 'string' ? record.id : Object.values(record ?? {}).find((v): v is { id: string } => !!v && typeof v === 'object' && typeof (v as { id?: unknown }).id === 'string')?.id;
  if (named) target.id = named;
  return target;
}

/** An org command's org, and the chain its entries go to (the org's, as REST's `:org` routes). */
async function orgOf(app: INestApplicationContext, slug: string) {
  const org = await app.get(OrgRegistry).resolve(slug);
  return { org, chain: () => app.get(AuditService).chain(org) };
}

/** An org command audited as its REST twin: `action` on the org's chain, targeted like the route (`params`). */
async function onOrg(
  app: INestApplicationContext,
  operator: string,
  slug: string,
  spec: { action: string; transactional: boolean; params?: Record<string, string>; work: (org: OrgRef) => Promise<unknown> },
): Promise<CommandResult> {
  const { org, chain } = await orgOf(app, slug);
  const output = await audited(app, operator, {
    transactional: spec.transactional,
    chain,
    automatic: { action: spec.action, target: (r) => routeTarget({ org: slug, ...spec.params }, org.id, r) },
    work: () => spec.work(org),
  });
  return { output, exitCode: 0 };
}

/** A whole number of at least 1, for an option. */
function positive(option: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^[1-9][0-9]{0,15}$/.test(value)) throw new UsageError(`--${option} takes a whole number of at least 1`);
  return Number(value);
}

export const COMMANDS: Record<string, Command> = {
  migrate: {
    usage: 'migrate',
    summary: "bring the control plane and every org database to this version's schema; writes the bootstrap token on the first run (needs DATABASE_OWNER_URL)",
    arity: [0, 0],
    run() {
      throw new Error('migrate builds its own application');
    },
    async standalone(config) {
      return { output: await migrateInstallation(config), exitCode: 0 };
    },
  },
  backup: {
    usage: 'backup <file> [--objects] [--key-file <file>]',
    summary: 'write one encrypted, checksummed bundle: the control plane and every org database, the state directory (TLS_DIR), the objects\' listing with sha256, the objects with --objects; passphrase from COFFER_BACKUP_PASSPHRASE (needs DATABASE_OWNER_URL and pg_dump)',
    arity: [1, 1],
    options: { 'key-file': 'a file whose content is the secret the bundle is encrypted under, in place of COFFER_BACKUP_PASSPHRASE' },
    flags: { objects: 'include the objects themselves, not only their listing' },
    run() {
      throw new Error('backup builds no application');
    },
    async standalone(config, { args: [file], options, flags }) {
      const summary = await backupInstallation(config, { file, objects: flags?.includes('objects') ?? false, keyFile: options?.['key-file'] });
      return { output: summary, exitCode: 0 };
    },
  },
  restore: {
    usage: 'restore <file> [--force] [--key-file <file>]',
    summary: 'bring an installation back from a bundle of `coffer backup`, after checking every checksum; refuses a non-empty installation without --force; exit 2 when listed objects are missing (needs DATABASE_OWNER_URL and pg_restore)',
    arity: [1, 1],
    options: { 'key-file': 'the key file the bundle was written with, in place of COFFER_BACKUP_PASSPHRASE' },
    flags: { force: "replace an installation that is not empty: its databases are dropped (stop Coffer's processes first)" },
    run() {
      throw new Error('restore builds no application');
    },
    async standalone(config, { args: [file], options, flags }) {
      const { summary, complete } = await restoreInstallation(config, { file, force: flags?.includes('force') ?? false, keyFile: options?.['key-file'] });
      return { output: summary, exitCode: complete ? 0 : 2 };
    },
  },
  'orgs:create': {
    usage: 'orgs:create <slug> <name> [<admin-email> <admin-display-name>]',
    summary: 'create an organization, with its first admin and their API key (shown once) if both are given',
    arity: [2, 4],
    async run(app, { args: [slug, name, email, displayName], operator }) {
      if (email !== undefined && displayName === undefined) throw new UsageError('the first admin needs both an e-mail and a display name');
      const parsed = CreateOrganizationBody.safeParse({ slug, name, ...(email !== undefined && { admin: { email, displayName } }) });
      if (!parsed.success) throw new AppError('validation_failed', 'invalid organization', parsed.error.issues);
      const body = parsed.data;
      const result = await audited(app, operator, {
        transactional: true,
        chain: () => app.get(AuditService).chain(undefined),
        automatic: {
          action: 'organization.created',
          // No id while the provisioner has not registered it (a pending creation).
          target: (r) => {
            const id = (r as { organization?: { id?: string } } | undefined)?.organization?.id;
            return id ? { id } : null;
          },
        },
        work: async () => presentOrgCreation(await app.get(OrgsService).create(body)),
      });
      return { output: result, exitCode: 0 };
    },
  },
  'orgs:list': {
    usage: 'orgs:list',
    summary: 'list every organization, active and still provisioning (what GET /organizations answers)',
    arity: [0, 0],
    async run(app, { operator }) {
      // GET /organizations is not an audited read: no entry, as over REST.
      const result = await audited(app, operator, {
        transactional: false,
        chain: () => app.get(AuditService).chain(undefined),
        work: async () => ({ organizations: (await app.get(OrgRegistry).list()).map(publicOrg) }),
      });
      return { output: result, exitCode: 0 };
    },
  },
  'users:list': {
    usage: 'users:list <org-slug>',
    summary: "list an org's users, disabled ones included (GET .../users; audited as users.listed)",
    arity: [1, 1],
    run: (app, { args: [slug], operator }) =>
      onOrg(app, operator, slug, { action: 'users.listed', transactional: false, work: async (org) => ({ users: await app.get(UsersService).list(org) }) }),
  },
  'users:disable': {
    usage: 'users:disable <org-slug> <user-id>',
    summary: "disable a user: every key of theirs stops working (the API's cache drops it within API_KEY_CACHE_TTL_MS); never the org's last active admin (last_admin)",
    arity: [2, 2],
    run: (app, { args: [slug, userId], operator }) =>
      onOrg(app, operator, slug, { action: 'user.disabled', transactional: true, params: { userId }, work: async (org) => ({ user: await app.get(UsersService).disable(org, userId) }) }),
  },
  'users:enable': {
    usage: 'users:enable <org-slug> <user-id>',
    summary: 'enable a disabled user again; their keys that are neither revoked nor expired work again',
    arity: [2, 2],
    run: (app, { args: [slug, userId], operator }) =>
      onOrg(app, operator, slug, { action: 'user.enabled', transactional: true, params: { userId }, work: async (org) => ({ user: await app.get(UsersService).enable(org, userId) }) }),
  },
  'keys:list': {
    usage: 'keys:list <org-slug> [--user <user-id>]',
    summary: "list an org's API keys, whatever their status, never their secrets (GET .../api-keys); the CLI issues none (impersonation_refused)",
    arity: [1, 1],
    options: { user: "only this user's keys (user_not_found if there is no such user)" },
    async run(app, { args: [slug], operator, options }) {
      const { org, chain } = await orgOf(app, slug);
      const userId = options?.user;
      // GET .../api-keys is not an audited read: no entry, as over REST.
      const result = await audited(app, operator, {
        transactional: false,
        chain,
        work: async () => {
          if (userId !== undefined) await app.get(UsersService).get(org, userId);
          return { apiKeys: await app.get(ApiKeysService).list(org, userId) };
        },
      });
      return { output: result, exitCode: 0 };
    },
  },
  'keys:revoke': {
    usage: 'keys:revoke <org-slug> <key-id>',
    summary: "revoke an API key (ids: keys:list); it fails authentication once the API's cache drops it (within API_KEY_CACHE_TTL_MS)",
    arity: [2, 2],
    run: (app, { args: [slug, keyId], operator }) =>
      onOrg(app, operator, slug, { action: 'api_key.revoked', transactional: true, params: { keyId }, work: async (org) => ({ apiKey: await app.get(ApiKeysService).revoke(org, keyId) }) }),
  },
  'audit:verify': {
    usage: 'audit:verify <org-slug> | --control',
    summary: "check an org's (or the control plane's) audit chain and its signed checkpoints; exit 2 when it is broken",
    arity: [0, 1],
    control: true,
    async run(app, invocation) {
      const { chain, target: entryTarget } = await chainOf(app, invocation);
      const result = await audited(app, invocation.operator, {
        transactional: false,
        chain: () => chain,
        automatic: { action: 'audit_log.verified', target: () => entryTarget },
        work: () => app.get(AuditService).verify(chain),
      });
      return { output: result, exitCode: result.valid ? 0 : 2 };
    },
  },
  'audit:verify-offline': {
    usage: 'audit:verify-offline <dir-or-ndjson> [--keys <file>]',
    summary: 'check an exported or delivered audit log against its digests and checkpoints with the public keys alone (no database, KMS or Redis); exit 2 when it is broken',
    arity: [1, 1],
    options: { keys: 'the chain\'s public keys: the JSON of GET /api/v1/audit/keys?chain=<org id> (else the digests\' own, trusted on first use)' },
    run() {
      throw new Error('audit:verify-offline runs without the application');
    },
    async offline({ args: [path], options }) {
      const result = await verifyOfflinePath(path, options?.keys);
      return { output: result, exitCode: result.valid ? 0 : 2 };
    },
  },
  'audit:export': {
    usage: 'audit:export <org-slug> | --control [--since <seq>] [--output <file>]',
    summary:
      "write an org's (or the control plane's) audit entries as NDJSON, as the REST export does (newest first), then the newest signed checkpoint and the chain's public keys, each a line: audit:verify-offline checks the file alone; to stdout (the summary on stderr) or a file (mode 0600); audited as audit_log.read",
    arity: [0, 1],
    control: true,
    options: {
      since: 'only entries from this sequence number on (an export not from 1 verifies together with the earlier ones)',
      output: 'write to this file (mode 0600, replaced only once complete) and print the summary on stdout',
    },
    async run(app, invocation) {
      const since = positive('since', invocation.options?.since, 1);
      const { chain, target } = await chainOf(app, invocation);
      const sink = await openExportSink(invocation.options?.output);
      const summary = await audited(app, invocation.operator, {
        transactional: false,
        chain: () => chain,
        automatic: { action: 'audit_log.read', target: () => target },
        work: () => exportAuditChain(app, chain, since, sink),
      });
      if (invocation.options?.output !== undefined) return { output: summary, exitCode: 0 };
      // stdout holds the NDJSON alone.
      console.error(JSON.stringify(summary));
      return { output: undefined, exitCode: 0 };
    },
  },
  'keys:rotate': {
    usage: 'keys:rotate <org-slug>',
    summary: "rotate the org's KMS key now; the worker then rewraps its stored data keys",
    arity: [1, 1],
    async run(app, { args: [slug], operator }) {
      const org = await app.get(OrgRegistry).resolve(slug);
      const result = await audited(app, operator, {
        transactional: true,
        chain: () => app.get(AuditService).chain(org),
        automatic: { action: 'kms.key.rotation_requested', target: () => ({ org: slug, orgId: org.id }) },
        work: () => app.get(KeyRotationService).rotate(org, 'manual'),
      });
      return { output: result, exitCode: 0 };
    },
  },
  'rewrap:status': {
    usage: 'rewrap:status <org-slug> [--wait] [--stall-after <seconds>]',
    summary:
      "the org key's versions and the stored data keys still wrapped under an older one (GET .../keys); with --wait, waits for the worker's rewrap to finish, progress on stderr, then exit 0, or exit 2 once the count has not gone down for --stall-after seconds (is a worker running?)",
    arity: [1, 1],
    options: { 'stall-after': 'with --wait: give up (exit 2) after this many seconds without progress; default 600' },
    flags: { wait: 'wait until nothing remains under an older version, showing progress on stderr' },
    async run(app, { args: [slug], operator, options, flags }) {
      const stallMs = positive('stall-after', options?.['stall-after'], 600) * 1000;
      const { org, chain } = await orgOf(app, slug);
      // GET .../keys is not an audited read: no entry, as over REST. Each read is a scope of its own.
      const read = () => audited(app, operator, { transactional: false, chain, work: () => app.get(KeyRotationService).describe(org) });
      if (!flags?.includes('wait')) return { output: await read(), exitCode: 0 };
      const waited = await waitForRewrap(read, { stallMs, intervalMs: 1000, stream: process.stderr });
      if (!waited.done) {
        console.error(`coffer rewrap:status: no progress for ${Math.round(waited.stalledMs! / 1000)}s, ${waited.view.rewrap.remaining} data keys still wrapped under a version older than v${waited.view.latestVersion}: is a worker running?`);
      }
      return { output: waited.view, exitCode: waited.done ? 0 : 2 };
    },
  },
  'audit:checkpoint': {
    usage: 'audit:checkpoint <org-slug> | --control',
    summary: "sign the head of an org's (or the control plane's) audit chain now",
    arity: [0, 1],
    control: true,
    async run(app, invocation) {
      const { chain } = await chainOf(app, invocation);
      const signed = await app.get(AuditService).checkpoint(chain);
      return { output: { signed: signed ?? null }, exitCode: 0 };
    },
  },
  'certs:list': {
    usage: 'certs:list',
    summary: 'list the ACME certificates: names, expiry, last renewal, next attempt',
    arity: [0, 0],
    async run(app) {
      return { output: { certificates: await app.get(CertificateRenewalService).list() }, exitCode: 0 };
    },
  },
  'certs:renew': {
    usage: 'certs:renew <certificate-id>',
    summary: 'renew an ACME certificate now, whatever its due date (ids: certs:list)',
    arity: [1, 1],
    async run(app, { args: [id], operator }) {
      const result = await audited(app, operator, {
        transactional: true,
        chain: () => app.get(AuditService).chain(undefined),
        automatic: { action: 'certificate.renewal_requested', target: () => ({ id }) },
        work: () => app.get(CertificateRenewalService).requestRenewal(id),
      });
      return { output: result, exitCode: 0 };
    },
  },
  'status:encryption': {
    usage: 'status:encryption <org-slug>',
    summary: "an org's encryption status, measured now (what GET .../encryption-status answers)",
    arity: [1, 1],
    async run(app, { args: [slug], operator }) {
      const org = await app.get(OrgRegistry).resolve(slug);
      const result = await audited(app, operator, {
        transactional: false,
        chain: () => app.get(AuditService).chain(org),
        automatic: { action: 'encryption_status.read', target: () => ({ org: slug, orgId: org.id }) },
        // No network hop: the CLI reads PostgreSQL and the KMS itself.
        work: () => app.get(EncryptionStatusService).status(org, 'n/a (local CLI)'),
      });
      return { output: result, exitCode: 0 };
    },
  },
  health: {
    usage: 'health',
    summary: 'check PostgreSQL and the KMS; exit 2 when either is down or the KMS is sealed',
    arity: [0, 0],
    async run(app) {
      const postgres = await app
        .get(DatabaseService)
        .control.query('SELECT 1')
        .then(() => 'ok', () => 'unreachable');
      const kms = await app.get<KmsProvider>(KMS).health();
      const ok = postgres === 'ok' && kms.reachable && !kms.sealed;
      return { output: { postgres, kms }, exitCode: ok ? 0 : 2 };
    },
  },
};

export { UsageError };
