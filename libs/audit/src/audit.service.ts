import { Inject, Injectable } from '@nestjs/common';
import { UnitOfWork } from '@coffer/database';
import { toErrorResponse } from '@coffer/http';
import { KMS, KmsProvider } from '@coffer/kms';
import { LOGGER, Logger } from '@coffer/logging';
import { Actor, NO_REQUEST, OrgRef, RequestSource } from '@coffer/tenancy';
import { ChainVerifier, VerifyResult } from './audit-chain';
import { AuditParams, AuditScope, currentAuditScope, runInAuditScope } from './audit-context';
import { AuditChain, AuditQuery, AuditRepository } from './audit.repository';
import { auditWriteFailures } from './audit-sanitize';

export interface AuditedWork<T> {
  actor: Actor;
  source: RequestSource;
  /** Mutations run in one transaction per database, committed with their audit entries. */
  transactional: boolean;
  /**
   * Decided when the work is done: a job or a public route may learn its org only from what it
   * reads, and names it with setAuditOrg().
   */
  chain(org: OrgRef | undefined): AuditChain;
  /** The entry every mutation gets without the handler asking, on success and on failure. */
  automatic?: { action: string; target(result?: unknown): Record<string, unknown> | null };
  work(): Promise<T>;
}

/**
 * Runs requests and jobs inside an audit scope (so `audit()` works anywhere in them) and writes
 * what they emitted to the chain: for mutations in the same transaction as the change, so the
 * commit blocks on the log and a failed log write undoes the change; a failed mutation gets an
 * entry of its own, with its error code, in a transaction of its own.
 */
@Injectable()
export class AuditService {
  constructor(
    private readonly repository: AuditRepository,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(KMS) private readonly kms: KmsProvider,
  ) {}

  chain(org: OrgRef | undefined): AuditChain {
    return this.repository.chain(org);
  }

  /**
   * THE transaction scope. Every HTTP request (AuditInterceptor), every job (JobWorkers.run) and
   * every CLI command runs its work in exactly one call of this, and scopes never nest (a call
   * inside another throws). A transactional scope is one UnitOfWork: one transaction per
   * database its work touches, committed at the end together with the audit entries the work
   * emitted, the audit database first; on failure all of it rolls back. A job that must commit
   * item by item does so inside its one scope, with commitUnit(). What must commit apart from
   * the scope is marked @OutsideTransaction() where it is declared.
   */
  async run<T>(spec: AuditedWork<T>): Promise<T> {
    const outer = currentAuditScope();
    if (outer && openScopes.has(outer)) throw new Error('AuditService.run() inside another scope: scopes do not nest (see commitUnit)');
    const scope = new AuditScope(spec.actor, spec.source);
    const unit = spec.transactional ? new UnitOfWork() : undefined;
    openScopes.set(scope, { unit, chain: spec.chain });
    let result: T;
    try {
      result = await runInAuditScope(scope, () => (unit ? unit.run(spec.work) : spec.work()));
      if (spec.automatic) scope.add({ ...scope.details, action: spec.automatic.action, target: spec.automatic.target(result) ?? undefined });
      if (unit) {
        await unit.commit(this.closing(spec.chain(scope.org), scope));
      } else if (scope.size) {
        await this.repository.appendAlone(spec.chain(scope.org), scope.entries());
      }
    } catch (error) {
      await unit?.rollback();
      if (spec.automatic) await this.recordFailure(spec, error, scope.org, scope.details);
      throw error;
    } finally {
      openScopes.delete(scope);
    }
    return result;
  }

  /**
   * Ends a unit inside the current transactional scope (a job, a mutating request): runs `item`,
   * then commits at once everything the scope did since its last commit, `item` included, with
   * the audit entries emitted meanwhile; the work goes on in new transactions. When `item` (or
   * the commit) fails, that much is rolled back and its entries discarded, earlier units stay
   * committed, and the error is thrown. For work whose items must each commit on their own,
   * visibly while it runs (the spool flush), one item after another, never several at once; the
   * audit limits apply per unit.
   */
  async commitUnit<T>(item: () => Promise<T>): Promise<T> {
    const scope = currentAuditScope();
    const open = scope && openScopes.get(scope);
    if (!scope || !open?.unit) throw new Error('commitUnit() outside a transactional scope');
    const unit = open.unit;
    try {
      const result = await item();
      await unit.commitAndContinue(this.closing(open.chain(scope.org), scope));
      return result;
    } catch (error) {
      scope.drain();
      await unit.rollbackAndContinue();
      throw error;
    }
  }

  /** What a unit's commit sends first: the chain's database, with the append of the scope's entries. */
  private closing(chain: AuditChain, scope: AuditScope) {
    return { key: chain.key, pool: chain.pool(), closing: this.repository.appendStatement(chain, scope.drain()) };
  }

  /**
   * A denied or failed request, in its own transaction (sanitized if PostgreSQL refuses it as
   * written). Failing to write it fails nothing else, but is logged as an error and counted in
   * coffer_audit_write_failures_total: the app log is never its only, unnoticed trace.
   */
  async recordFailure(
    spec: Omit<AuditedWork<unknown>, 'work' | 'transactional'>,
    error: unknown,
    org?: OrgRef,
    details: Record<string, unknown> = {},
  ): Promise<void> {
    const { body, status } = toErrorResponse(error, spec.source.requestId ?? '');
    const scope = new AuditScope(spec.actor, spec.source);
    try {
      scope.add({
        ...details,
        action: spec.automatic!.action,
        outcome: 'failure',
        target: spec.automatic!.target() ?? undefined,
        error: { code: body.error.code, status },
      });
      await this.repository.appendAlone(spec.chain(org), scope.entries());
    } catch (failure) {
      const e = failure as Error;
      auditWriteFailures.inc({ kind: 'failure_entry' });
      this.logger.error(
        { requestId: spec.source.requestId, action: spec.automatic?.action, err: { name: e?.name, message: e?.message } },
        'audit entry of a failed request not written',
      );
    }
  }

  /**
   * Records entries in a transaction of their own, now: outside any request or job (startup,
   * CLI), or for something a rollback cannot undo (a key created in the KMS).
   */
  async record(
    chain: AuditChain,
    actor: Actor,
    entries: AuditParams[],
    source: RequestSource = NO_REQUEST,
  ): Promise<void> {
    const scope = new AuditScope(actor, source);
    for (const entry of entries) scope.add(entry);
    await this.repository.appendAlone(chain, scope.entries());
  }

  /**
   * Appends entries, as the current request's or job's actor and source, to a chain other than
   * the one its scope writes to: a change made from the control plane in an org's database (its
   * first admin and their key). Inside a unit of work the append joins that unit's transaction
   * on the chain's database, so the entries commit with the change or not at all.
   */
  async appendTo(chain: AuditChain, entries: AuditParams[]): Promise<void> {
    const current = currentAuditScope();
    if (!current) throw new Error('appendTo() called outside a request or job');
    const scope = new AuditScope(current.actor, current.source);
    for (const entry of entries) scope.add(entry);
    const statement = this.repository.appendStatement(chain, scope.entries());
    if (statement) await chain.pool().query(statement);
  }

  list(chain: AuditChain, query: AuditQuery) {
    return this.repository.list(chain, query);
  }

  scan(chain: AuditChain) {
    return this.repository.scan(chain);
  }

  /**
   * Signs the chain's head if it moved since the last checkpoint, with the chain's ed25519 key
   * in the KMS: from then on, rewriting any entry up to it is detectable even by whoever can
   * recompute every hash. Returns the sequence number signed, if any.
   */
  async checkpoint(chain: AuditChain): Promise<number | undefined> {
    const head = await this.repository.head(chain);
    if (!head || head.seq <= (await this.repository.lastCheckpoint(chain))) return undefined;
    const keyName = checkpointKeyName(chain.id);
    await this.kms.ensureKey(keyName, 'ed25519');
    const signature = await this.kms.sign(keyName, checkpointData(chain.id, head.seq, head.hash));
    await this.repository.insertCheckpoint(chain, { seq: head.seq, hash: head.hash, keyName, signature });
    return head.seq;
  }

  /**
   * Checks every entry's hash and link, then that each checkpoint matches the chain at its
   * sequence and carries a valid signature by this chain's key.
   */
  async verify(chain: AuditChain): Promise<VerifyResult> {
    const verifier = new ChainVerifier(chain.id);
    const hashes = new Map<number, Buffer>();
    const checkpoints = await this.repository.checkpoints(chain);
    const wanted = new Set(checkpoints.map((c) => c.seq));
    for await (const entry of this.repository.scan(chain)) {
      if (!verifier.next(entry)) break;
      if (wanted.has(entry.seq)) hashes.set(entry.seq, entry.hash);
    }
    for (const { seq, hash, keyName, signature } of checkpoints) {
      const signed = checkpointData(chain.id, seq, hash);
      if (keyName !== checkpointKeyName(chain.id) || !(await this.kms.verify(keyName, signed, signature))) {
        verifier.failAt(seq, `checkpoint ${seq} has an invalid signature`);
      } else if (!hashes.has(seq) && verifier.result().valid) {
        verifier.failAt(verifier.head.seq + 1, `checkpoint ${seq} signed entries that are no longer there`);
      } else if (hashes.has(seq) && !hashes.get(seq)!.equals(hash)) {
        verifier.failAt(seq, `entry ${seq} does not match its signed checkpoint`);
      }
    }
    return verifier.result();
  }
}

/**
 * The scopes running now, with what commitUnit() needs of them. A scope that has ended is not
 * here, even where its context lingers (a timer a request left behind).
 */
const openScopes = new WeakMap<AuditScope, { unit?: UnitOfWork; chain: AuditedWork<unknown>['chain'] }>();

/** One signing key per chain, so that one org's checkpoints cannot vouch for another's. */
export function checkpointKeyName(chainId: string): string {
  return `coffer-audit-${chainId}`;
}

/** What a checkpoint signs: the chain, a sequence number and the hash of the chain up to it. */
export function checkpointData(chainId: string, seq: number, hash: Buffer): Buffer {
  return Buffer.from(`coffer-audit-checkpoint\0${chainId}\0${seq}\0${hash.toString('hex')}`);
}

