import { Client, DatabaseError, Pool, PoolClient, QueryResult } from 'pg';
import { ConnectionBudget, DatabaseBusyError } from './connection-budget';

export interface PoolsSettings {
  /** Connections of the whole process: the control pool's plus every org pool's. */
  budget: number;
  /** Of the budget, kept for the control plane (every request may need it: registry, KMS). */
  control: number;
  /** Most connections one org database may hold: its pool's size. */
  orgShare: number;
  acquireTimeoutMs: number;
  idleTimeoutMs: number;
  applicationName: string;
}

/**
 * The app role's pools of one process, under one connection budget. The control plane has a
 * fixed pool of `control` connections; org databases share the rest through a ConnectionBudget,
 * each in a pool no larger than `orgShare`, opened on demand. Connections idle for
 * `idleTimeoutMs` close; when the budget is full and someone waits, idle connections of the least
 * recently used org pools are closed to make room (a pool left with none is evicted). A client in
 * use (a unit of work's transaction, a running query) is never closed, nor a pool that has one
 * or that a caller waits on: in-use clients always finish.
 *
 * Callers get a handle, not the pg Pool: it finds the live pool at every connect, so a handle
 * kept across an eviction reaches the org's new pool instead of an ended one.
 */
export class BudgetedPools {
  readonly budget: ConnectionBudget;
  private readonly controlPool: Pool;
  /** Live org pools, least recently used first (Map order). */
  private readonly orgPools = new Map<string, Pool>();

  constructor(
    controlUrl: string,
    private readonly settings: PoolsSettings,
  ) {
    if (settings.control >= settings.budget) throw new Error('the control-plane connections must leave some of the budget to orgs');
    this.budget = new ConnectionBudget({
      total: settings.budget - settings.control,
      perKey: Math.min(settings.orgShare, settings.budget - settings.control),
      acquireTimeoutMs: settings.acquireTimeoutMs,
      reclaim: () => this.evictIdle(),
    });
    this.controlPool = this.createPool(controlUrl, settings.control);
  }

  control(): Pool {
    return handle(() => this.controlPool, this.settings.acquireTimeoutMs);
  }

  /** The handle of one org database's pool; `url` is only read when a pool must be opened. */
  org(database: string, url: () => string): Pool {
    return handle(() => this.orgPool(database, url), this.settings.acquireTimeoutMs);
  }

  /** Open connections now: the control pool's and the org pools' (what PostgreSQL sees). */
  get open(): { control: number; orgs: number; waiting: number; orgPools: number } {
    return { control: this.controlPool.totalCount, orgs: this.budget.inUse, waiting: this.budget.waiting, orgPools: this.orgPools.size };
  }

  async end(): Promise<void> {
    const pools = [this.controlPool, ...this.orgPools.values()];
    this.orgPools.clear();
    await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  }

  private orgPool(database: string, url: () => string): Pool {
    let pool = this.orgPools.get(database);
    if (pool) this.orgPools.delete(database); // re-inserted below: Map order is the LRU order
    else pool = this.createOrgPool(database, url());
    this.orgPools.set(database, pool);
    return pool;
  }

  private createOrgPool(database: string, url: string): Pool {
    const budget = this.budget;
    // Every connection of this pool holds a budget slot from before it connects until it ends.
    class BudgetedClient extends Client {
      override connect(): Promise<Client>;
      override connect(callback: (err: Error | null, client?: Client) => void): void;
      override connect(callback?: (err: Error | null, client?: Client) => void): Promise<Client> | void {
        const connected = budget.acquire(database).then((slot) => {
          this.once('end', () => slot.release());
          return super.connect().catch((error: unknown) => {
            slot.release();
            throw error;
          });
        });
        if (!callback) return connected;
        connected.then((client) => callback(null, client), callback);
      }
    }
    const pool = this.createPool(url, this.budget.perKeyLimit, BudgetedClient);
    // A client back in the pool may leave the pool all idle, so closable for someone waiting.
    pool.on('release', () => {
      if (this.budget.waiting) process.nextTick(() => this.budget.poke());
    });
    // An org pool left without connections is forgotten: it holds nothing, the next use opens one.
    pool.on('remove', () => {
      if (!pool.totalCount && !pool.waitingCount && this.orgPools.get(database) === pool) this.orgPools.delete(database);
    });
    return pool;
  }

  /**
   * Frees idle connections for a waiter, least recently used pool first: a pool whose connections
   * are all idle (and that nobody waits on) is closed whole; otherwise one idle connection of a
   * pool goes. The latter matters: pg hands a request that made its pool open a connection only
   * that connection, so a pool can hold an idle client while its next one waits for a slot.
   * Returns how many slots will come back.
   */
  private evictIdle(): number {
    for (const [database, pool] of this.orgPools) {
      if (!pool.totalCount || pool.idleCount !== pool.totalCount || pool.waitingCount) continue;
      this.orgPools.delete(database);
      const closing = pool.totalCount;
      void pool.end().catch(() => undefined);
      return closing;
    }
    for (const pool of this.orgPools.values()) {
      // More idle clients than queued callers: the connect below is served one of them at once.
      if (pool.idleCount <= pool.waitingCount) continue;
      pool.connect().then(
        (client) => client.release(new Error('closed to make room in the connection budget')),
        () => undefined,
      );
      return 1;
    }
    return 0;
  }

  private createPool(connectionString: string, max: number, client?: typeof Client): Pool {
    const pool = new Pool({
      connectionString,
      max,
      idleTimeoutMillis: this.settings.idleTimeoutMs,
      application_name: this.settings.applicationName,
      ...(client && { Client: client }),
    });
    // An idle client losing its connection must not crash the process; the next query reconnects.
    pool.on('error', () => undefined);
    return pool;
  }
}

/**
 * What DatabaseService hands out: `connect` and `query` of the pool `live()` returns at the
 * time of the call, waiting at most `timeoutMs` for a connection, then DatabaseBusyError.
 */
function handle(live: () => Pool, timeoutMs: number): Pool {
  const connect = (): Promise<PoolClient> => {
    const pending = live().connect();
    return new Promise<PoolClient>((resolve, reject) => {
      let late = false;
      const timer = setTimeout(() => {
        late = true;
        reject(new DatabaseBusyError());
      }, timeoutMs);
      pending.then(
        (client) => {
          clearTimeout(timer);
          // The caller gave up: the client goes straight back (pg's queue cannot drop a waiter).
          if (late) client.release();
          else resolve(client);
        },
        (error: unknown) => {
          clearTimeout(timer);
          if (!late) reject(error);
        },
      );
    });
  };
  // As pg's Pool.query: one client for one statement. Unlike pg, a statement the server refused
  // (a unique violation, say) keeps its connection: reconnecting would cost more than the error.
  const query = async (...args: unknown[]): Promise<QueryResult> => {
    const client = await connect();
    try {
      const result = await (client.query as (...a: unknown[]) => Promise<QueryResult>)(...args);
      client.release();
      return result;
    } catch (error) {
      client.release(error instanceof DatabaseError && error.severity === 'ERROR' ? undefined : (error as Error));
      throw error;
    }
  };
  return { connect, query } as unknown as Pool;
}
