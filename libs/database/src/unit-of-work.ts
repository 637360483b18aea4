import { AsyncLocalStorage } from 'node:async_hooks';
import type { ClientBase, Pool, PoolClient } from 'pg';

/**
 * One transaction per database for the whole of a mutating request or job: every query the
 * request's code sends through DatabaseService while the unit is active runs on that
 * transaction, so the audit entries written at the end commit (or roll back) with the change
 * without the handlers passing a client around. A database's transaction begins on first use.
 * The scope that owns the unit (AuditService.run) ends it with commit() or rollback(); work that
 * commits item by item ends each item's transactions with commitAndContinue() or
 * rollbackAndContinue(), and the next query begins new ones in the same unit.
 */
export class UnitOfWork {
  private readonly open = new Map<string, Promise<PoolClient>>();
  private savepoints = 0;
  private finished = false;
  private committed: (() => void)[] = [];

  /**
   * Runs `fn` once the unit's transactions have committed (not if they roll back): what must
   * not happen before the change is visible to others, such as dropping a cache entry that a
   * concurrent reader would otherwise fill again with the row as it was before the commit.
   */
  afterCommit(fn: () => void): void {
    this.committed.push(fn);
  }

  /** The transaction's client on `pool`, begun on first use. */
  client(key: string, pool: Pool): Promise<PoolClient> {
    if (this.finished) throw new Error('unit of work already finished');
    let client = this.open.get(key);
    if (!client) {
      // Asked from inside the unit, DatabaseService hands out the unit's view of the pool.
      const raw = scopedPoolOf(pool)?.pool ?? pool;
      client = raw.connect().then(async (c) => {
        try {
          await c.query('BEGIN');
          return c;
        } catch (error) {
          c.release(error as Error);
          throw error;
        }
      });
      this.open.set(key, client);
    }
    return client;
  }

  /** What DatabaseService hands out instead of the pool while this unit is active. */
  pool(key: string, pool: Pool): Pool {
    const scoped: ScopedPool = {
      [SCOPED]: { unit: this, key, pool },
      query: (...args: unknown[]) => this.client(key, pool).then((c) => (c.query as (...a: unknown[]) => unknown)(...args)),
      connect: () => this.client(key, pool),
    };
    return scoped as unknown as Pool;
  }

  /** A nested transaction() inside the unit: a savepoint, so its failure undoes only itself. */
  async savepoint<T>(key: string, pool: Pool, fn: (client: ClientBase) => Promise<T>): Promise<T> {
    const client = await this.client(key, pool);
    const name = `coffer_sp_${++this.savepoints}`;
    await client.query(`SAVEPOINT ${name}`);
    try {
      const result = await fn(client);
      await client.query(`RELEASE SAVEPOINT ${name}`);
      return result;
    } catch (error) {
      await client.query(`ROLLBACK TO SAVEPOINT ${name}`).catch(() => undefined);
      throw error;
    }
  }

  /**
   * Commits `first` (the database holding the audit entries) before the others: should a later
   * commit fail, the log records a change that did not fully happen, never the reverse.
   * `first.closing`, a statement of literals (the audit append), travels in the same message
   * as that COMMIT, so whatever lock it takes is held only while the database works.
   */
  async commit(first?: { key: string; pool: Pool; closing?: string }): Promise<void> {
    if (first?.closing) void this.client(first.key, first.pool).catch(() => undefined);
    this.finished = true;
    const keys = [...this.open.keys()].sort((a, b) => Number(b === first?.key) - Number(a === first?.key));
    let failure: unknown;
    for (const key of keys) {
      const client = await this.open.get(key)!.catch((error) => void (failure ??= error));
      if (!client) continue;
      try {
        if (failure) await client.query('ROLLBACK');
        else await commitWith(client, key === first?.key ? first.closing : undefined);
        client.release();
      } catch (error) {
        failure ??= error;
        client.release(error as Error);
      }
    }
    this.open.clear();
    const hooks = this.committed;
    this.committed = [];
    if (failure) throw failure;
    for (const hook of hooks) hook();
  }

  /** commit(), after which the unit stays usable: the next query begins new transactions. */
  async commitAndContinue(first?: { key: string; pool: Pool; closing?: string }): Promise<void> {
    await this.commit(first);
    this.finished = false;
  }

  /** rollback(), after which the unit stays usable: the next query begins new transactions. */
  async rollbackAndContinue(): Promise<void> {
    await this.rollback();
    this.finished = false;
  }

  async rollback(): Promise<void> {
    this.finished = true;
    this.committed = [];
    const clients = await Promise.all([...this.open.values()].map((c) => c.catch(() => undefined)));
    this.open.clear();
    await Promise.all(
      clients.map(async (client) => {
        if (!client) return;
        try {
          await client.query('ROLLBACK');
          client.release();
        } catch (error) {
          client.release(error as Error);
        }
      }),
    );
  }

  /** Runs `fn` with this unit active for everything it awaits. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    return storage.run(this, fn);
  }

  static current(): UnitOfWork | undefined {
    return storage.getStore();
  }

  /**
   * Runs `fn` with no unit active: work that must commit on its own (a failure's audit entry).
   * Code outside this library says so with @OutsideTransaction() on the method that owns it.
   */
  static outside<T>(fn: () => Promise<T>): Promise<T> {
    return storage.exit(fn);
  }
}

const storage = new AsyncLocalStorage<UnitOfWork>();

async function commitWith(client: PoolClient, closing?: string): Promise<void> {
  // A multi-statement simple query answers one result per statement. COMMIT of a transaction
  // that a failed statement aborted answers ROLLBACK, not an error.
  const results = await client.query(closing ? `${closing};\nCOMMIT` : 'COMMIT');
  const last = Array.isArray(results) ? results[results.length - 1] : results;
  if (last.command === 'ROLLBACK') throw new Error('transaction was aborted by an earlier error');
}
const SCOPED = Symbol('coffer.unit-of-work');

interface ScopedPool {
  [SCOPED]: { unit: UnitOfWork; key: string; pool: Pool };
  query: (...args: unknown[]) => Promise<unknown>;
  connect: () => Promise<PoolClient>;
}

export function scopedPoolOf(pool: Pool): ScopedPool[typeof SCOPED] | undefined {
  return (pool as unknown as Partial<ScopedPool>)[SCOPED];
}

/**
 * Marks a method that commits on its own, outside the caller's unit of work: progress that must
 * show while a job runs and survive its failure, a read that must not open the caller's
 * transaction, or an entry that must outlive a rollback. Repositories use it on the methods
 * that hold such SQL; a service method uses it only when a whole operation owns that boundary
 * (audit delivery, whose every step commits on its own), and says so. Where a transaction ends
 * is then visible on the method's declaration, never hidden in its body.
 */
export function OutsideTransaction(): MethodDecorator {
  return (_target, _key, descriptor: PropertyDescriptor) => {
    const method = descriptor.value as (...args: unknown[]) => Promise<unknown>;
    descriptor.value = function (this: unknown, ...args: unknown[]) {
      return UnitOfWork.outside(() => method.apply(this, args));
    };
  };
}
