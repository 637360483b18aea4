import { randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import type { INestApplicationContext } from '@nestjs/common';
import { AuditService, AuditedWork } from '@coffer/audit';
import { EncryptionStatusService } from '@coffer/encryption';
import { KeyRotationService } from '@coffer/keys';
import { KMS, KmsProvider } from '@coffer/kms';
import { CreateOrganizationBody, OrgsService } from '@coffer/orgs';
import { DatabaseService } from '@coffer/database';
import { AppError } from '@coffer/http';
import { CertificateRenewalService } from '@coffer/tls';
import { verifyOfflinePath } from './offline-verify';
import { UsageError } from './usage-error';
import { Actor, OrgRegistry, publicOrg } from '@coffer/tenancy';

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
  run(app: INestApplicationContext, invocation: Invocation): Promise<CommandResult>;
  /**
   * A command that needs no database, KMS or Redis: run without the application (main.ts never
   * loads the configuration or boots Nest for it), in place of `run`.
   */
  offline?(invocation: Invocation): Promise<CommandResult>;
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

export const COMMANDS: Record<string, Command> = {
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
        automatic: { action: 'organization.created', target: (r) => (r ? { id: (r as { organization: { id: string } }).organization.id } : null) },
        work: async () => {
          const { organization, admin } = await app.get(OrgsService).create(body);
          return {
            organization: publicOrg(organization),
            ...(admin && { admin: { user: admin.user, apiKey: { ...admin.apiKey, secret: admin.secret } } }),
          };
        },
      });
      return { output: result, exitCode: 0 };
    },
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
