import { Inject, Injectable, Optional } from '@nestjs/common';
import { UnitOfWork } from '@coffer/database';
import { AppError, toErrorResponse } from '@coffer/http';
import { KMS, KmsProvider, KmsRequestError } from '@coffer/kms';
import { LOGGER, Logger } from '@coffer/logging';
import { Actor, NO_REQUEST, OrgRef, RequestSource } from '@coffer/tenancy';
import { AuditAnchorStore } from './audit-anchors';
import { ChainVerifier, VerifyResult } from './audit-chain';
import { AuditParams, AuditScope, currentAuditScope, runInAuditScope } from './audit-context';
import { AuditChain, AuditQuery, AuditRepository } from './audit.repository';
import { AuditPublicKey, checkpointData, checkpointKeyName, parseSignature } from './audit-signing';
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
    /** Where checkpoints are anchored outside PostgreSQL; the modules always provide it. */
    @Optional() private readonly anchors?: AuditAnchorStore,
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
   * in the KMS, and anchors it outside PostgreSQL (AuditAnchorStore) before recording it in the
   * database: from then on, rewriting any entry up to it is detectable even by whoever can
   * recompute every hash. It never signs over a broken segment: the entries since the last
   * checkpoint (the newest of the database's and the storage's, its signature checked) are
   * verified first, and a break is logged and thrown (`audit_chain_broken`, the job's failure).
   * Returns the sequence number signed, if any.
   */
  async checkpoint(chain: AuditChain): Promise<number | undefined> {
    const head = await this.repository.head(chain);
    const previous = await this.lastCheckpoint(chain);
    const broken = await this.brokenSince(chain, previous, head);
    if (broken) {
      this.logger.error({ chain: chain.id, ...broken }, 'audit chain broken since its last checkpoint: not signed');
      throw new AppError('audit_chain_broken', `audit chain ${chain.id} is broken at entry ${broken.firstBadSequence}: ${broken.reason}`, broken);
    }
    if (!head || head.seq <= (previous?.seq ?? 0)) return undefined;
    const keyName = checkpointKeyName(chain.id);
    await this.kms.ensureKey(keyName, 'ed25519');
    const signature = await this.kms.sign(keyName, checkpointData(chain.id, head.seq, head.hash));
    await this.anchors?.write({
      format: 'coffer-audit-anchor/1',
      chain: chain.id,
      seq: head.seq,
      hash: head.hash.toString('hex'),
      signedAt: new Date().toISOString(),
      keyName,
      keyVersion: parseSignature(signature)?.version ?? 0,
      signature,
    });
    await this.repository.insertCheckpoint(chain, { seq: head.seq, hash: head.hash, keyName, signature });
    return head.seq;
  }

  /**
   * Checks every entry's hash and link, then each checkpoint outside the database (the storage
   * anchors) and in it (`audit_checkpoints`): its signature by this chain's key, and that the
   * chain still has its hash at its sequence number. Names the first bad sequence number and,
   * when a checkpoint caught it, which one (`anchor`); at the same sequence number an anchor
   * outside the database is named first.
   */
  async verify(chain: AuditChain): Promise<VerifyResult> {
    const verifier = new ChainVerifier(chain.id);
    const hashes = new Map<number, Buffer>();
    const checkpoints = [...(await this.storedAnchors(chain)), ...(await this.databaseCheckpoints(chain))];
    const wanted = new Set(checkpoints.map((c) => c.seq));
    for await (const entry of this.repository.scan(chain)) {
      if (!verifier.next(entry)) break;
      if (wanted.has(entry.seq)) hashes.set(entry.seq, entry.hash);
    }
    let intactAt = 0;
    for (const c of [...checkpoints].sort((a, b) => a.seq - b.seq)) {
      if (c.hash && hashes.get(c.seq)?.equals(c.hash)) intactAt = Math.max(intactAt, c.seq);
    }
    for (const { seq, hash, keyName, signature, location } of checkpoints) {
      if (!hash || !signature || keyName !== checkpointKeyName(chain.id) || !(await this.signatureValid(keyName, checkpointData(chain.id, seq, hash), signature))) {
        verifier.failAt(seq, `checkpoint ${seq} has an invalid signature`, location);
      } else if (!hashes.has(seq) && verifier.result().valid) {
        verifier.failAt(verifier.head.seq + 1, `checkpoint ${seq} signed entries that are no longer there`, location);
      } else if (hashes.has(seq) && !hashes.get(seq)!.equals(hash)) {
        const after = intactAt < seq && intactAt > 0 ? ` (the chain still matches checkpoint ${intactAt})` : '';
        verifier.failAt(seq, `entry ${seq} does not match its signed checkpoint${after}`, location);
      }
    }
    return verifier.result();
  }

  /**
   * The public keys of the chain's checkpoint and digest signatures, every version. Kept a
   * minute per chain: the route that publishes them is public, and must not turn each anonymous
   * request into a KMS call (a rotation shows within the minute).
   */
  async publicKeys(chainId: string, { fresh = false } = {}): Promise<AuditPublicKey[]> {
    const cached = this.keyCache.get(chainId);
    if (!fresh && cached && cached.until > Date.now()) return cached.keys;
    const keys = await this.fetchPublicKeys(chainId);
    if (this.keyCache.size >= 10_000) this.keyCache.clear();
    this.keyCache.set(chainId, { keys, until: Date.now() + 60_000 });
    return keys;
  }

  private readonly keyCache = new Map<string, { keys: AuditPublicKey[]; until: number }>();

  private async fetchPublicKeys(chainId: string): Promise<AuditPublicKey[]> {
    const keyName = checkpointKeyName(chainId);
    const keys = await this.kms.publicKeys(keyName).catch((error) => {
      if (error instanceof KmsRequestError) return []; // no checkpoint signed yet: no key
      throw error;
    });
    return keys.map((k) => ({ keyName, version: k.version, algorithm: 'ed25519' as const, publicKey: k.publicKey, createdAt: k.createdAt.toISOString() }));
  }

  /** The newest checkpoint, of the database's and the storage's, with its signature checked. */
  private async lastCheckpoint(chain: AuditChain): Promise<KnownCheckpoint | undefined> {
    const all = [...(await this.storedAnchors(chain)), ...(await this.databaseCheckpoints(chain))];
    return all.reduce<KnownCheckpoint | undefined>((newest, c) => (!newest || c.seq > newest.seq ? c : newest), undefined);
  }

  /** What breaks the chain between `previous` and `head`, if anything. */
  private async brokenSince(chain: AuditChain, previous: KnownCheckpoint | undefined, head: { seq: number; hash: Buffer } | undefined): Promise<VerifyResult | undefined> {
    const fail = (seq: number, reason: string, anchor?: string): VerifyResult => ({ valid: false, checkedThrough: seq - 1, firstBadSequence: seq, reason, ...(anchor && { anchor }) });
    if (previous) {
      const { seq, hash, keyName, signature, location } = previous;
      if (!hash || !signature || keyName !== checkpointKeyName(chain.id) || !(await this.signatureValid(keyName, checkpointData(chain.id, seq, hash), signature))) {
        return fail(seq, `checkpoint ${seq} has an invalid signature`, location);
      }
      if (!head || head.seq < seq) return fail((head?.seq ?? 0) + 1, `checkpoint ${seq} signed entries that are no longer there`, location);
      if (head.seq === seq) return head.hash.equals(hash) ? undefined : fail(seq, `entry ${seq} does not match its signed checkpoint`, location);
    }
    if (!head) return undefined;
    const verifier = new ChainVerifier(chain.id, previous && { seq: previous.seq, hash: previous.hash! });
    for await (const entry of this.repository.scan(chain, 1000, previous?.seq ?? 1)) {
      if (previous && entry.seq === previous.seq) {
        if (!entry.hash.equals(previous.hash!)) return fail(previous.seq, `entry ${previous.seq} does not match its signed checkpoint`, previous.location);
        continue;
      }
      if (entry.seq > head.seq || !verifier.next(entry)) break;
    }
    const result = verifier.result();
    if (!result.valid) return result;
    if (verifier.head.seq !== head.seq || !verifier.head.hash.equals(head.hash)) return fail(verifier.head.seq + 1, `entry ${verifier.head.seq + 1} changed while it was checked`);
    return undefined;
  }

  private async storedAnchors(chain: AuditChain): Promise<KnownCheckpoint[]> {
    if (!this.anchors) return [];
    return (await this.anchors.list(chain.id)).map(({ location, seq, anchor }) => ({
      seq,
      location,
      hash: anchor && Buffer.from(anchor.hash, 'hex'),
      keyName: anchor?.keyName,
      signature: anchor?.signature,
    }));
  }

  private async databaseCheckpoints(chain: AuditChain): Promise<KnownCheckpoint[]> {
    return (await this.repository.checkpoints(chain)).map(({ seq, hash, keyName, signature }) => ({
      seq,
      hash,
      keyName,
      signature,
      location: `database:audit_checkpoints/${seq}`,
    }));
  }

  /** A malformed or foreign signature is an invalid one; a KMS that does not answer is an error. */
  private async signatureValid(keyName: string, data: Buffer, signature: string): Promise<boolean> {
    try {
      return await this.kms.verify(keyName, data, signature);
    } catch (error) {
      if (error instanceof KmsRequestError) return false;
      throw error;
    }
  }
}

/** A checkpoint as verify meets it; an anchor that does not parse has no hash, key or signature. */
interface KnownCheckpoint {
  seq: number;
  location: string;
  hash?: Buffer;
  keyName?: string;
  signature?: string;
}

/**
 * The scopes running now, with what commitUnit() needs of them. A scope that has ended is not
 * here, even where its context lingers (a timer a request left behind).
 */
const openScopes = new WeakMap<AuditScope, { unit?: UnitOfWork; chain: AuditedWork<unknown>['chain'] }>();

export { checkpointData, checkpointKeyName } from './audit-signing';
