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
import { Actor, OrgRegistry, publicOrg } from '@coffer/tenancy';

export interface CommandResult {
  output: unknown;
  /** 0 done; 2 done, but what was checked is bad (a broken chain, a service down). */
  exitCode: number;
}

type Command = (app: INestApplicationContext, args: string[]) => Promise<CommandResult>;

/**
 * The operator at the shell is a platform admin: they hold the database credentials. Every
 * command runs as its REST twin does (AuditService.run, same action and target), so the log
 * cannot tell a change made here from one made over HTTP except by this actor.
 */
function operator(): Actor {
  return { kind: 'platform_admin', id: `cli:${userInfo().username}@${hostname()}`, via: 'cli' };
}

function audited<T>(app: INestApplicationContext, spec: Pick<AuditedWork<T>, 'transactional' | 'chain' | 'automatic' | 'work'>) {
  return app.get(AuditService).run({
    ...spec,
    actor: operator(),
    source: { requestId: randomUUID(), clientIp: null, userAgent: 'coffer-cli' },
  });
}

/** `<org-slug>` or `--control` (the control plane's chain). */
async function chainOf(app: INestApplicationContext, target: string | undefined) {
  const audit = app.get(AuditService);
  if (target === '--control') return { chain: audit.chain(undefined), target: null };
  if (!target) throw new UsageError('name an organization slug, or --control');
  const org = await app.get(OrgRegistry).resolve(target);
  return { chain: audit.chain(org), target: { org: target, orgId: org.id } };
}

export const COMMANDS: Record<string, { usage: string; run: Command }> = {
  'orgs:create': {
    usage: 'orgs:create <slug> <name> [<admin-email> <admin-display-name>]',
    async run(app, [slug, name, email, displayName]) {
      const parsed = CreateOrganizationBody.safeParse({ slug, name, ...(email && { admin: { email, displayName: displayName ?? email } }) });
      if (!parsed.success) throw new AppError('validation_failed', 'invalid organization', parsed.error.issues);
      const body = parsed.data;
      const result = await audited(app, {
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
    async run(app, [target]) {
      const { chain, target: entryTarget } = await chainOf(app, target);
      const result = await audited(app, {
        transactional: false,
        chain: () => chain,
        automatic: { action: 'audit_log.verified', target: () => entryTarget },
        work: () => app.get(AuditService).verify(chain),
      });
      return { output: result, exitCode: result.valid ? 0 : 2 };
    },
  },
  'keys:rotate': {
    usage: 'keys:rotate <org-slug>',
    async run(app, [slug]) {
      if (!slug) throw new UsageError('name an organization slug');
      const org = await app.get(OrgRegistry).resolve(slug);
      const result = await audited(app, {
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
    async run(app, [target]) {
      const { chain } = await chainOf(app, target);
      const signed = await app.get(AuditService).checkpoint(chain);
      return { output: { signed: signed ?? null }, exitCode: 0 };
    },
  },
  'certs:list': {
    usage: 'certs:list',
    async run(app) {
      return { output: { certificates: await app.get(CertificateRenewalService).list() }, exitCode: 0 };
    },
  },
  'certs:renew': {
    usage: 'certs:renew <certificate-id>   (ids: certs:list)',
    async run(app, [id]) {
      if (!id) throw new UsageError('name a certificate id');
      const result = await audited(app, {
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
    async run(app, [slug]) {
      if (!slug) throw new UsageError('name an organization slug');
      const org = await app.get(OrgRegistry).resolve(slug);
      const result = await audited(app, {
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

export class UsageError extends Error {}
