import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Pool } from 'pg';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { withDatabase } from './pg';
import { UnitOfWork } from './unit-of-work';

/**
 * Connection pools of the app role: the control plane, and one pool per org database, opened on
 * demand and closed least-recently-used first beyond ORG_POOL_LIMIT. Nothing here can run DDL.
 * While a unit of work is active (a mutating request or a job), what it hands out runs on the
 * unit's transaction instead.
 */
/** The unit-of-work key of the control-plane database (org databases use their names). */
export const CONTROL = 'control';

@Injectable()
export class DatabaseService implements OnApplicationShutdown {
  private readonly controlPool: Pool;
  private readonly orgPools = new Map<string, Pool>();

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {
    this.controlPool = this.createPool(config.DATABASE_APP_URL);
  }

  get control(): Pool {
    return UnitOfWork.current()?.pool(CONTROL, this.controlPool) ?? this.controlPool;
  }

  /** The app-role pool of one org database. `server` is the registry's database_server. */
  org(databaseName: string, server = 'primary'): Pool {
    const pool = this.orgPool(databaseName, server);
    return UnitOfWork.current()?.pool(databaseName, pool) ?? pool;
  }

  private orgPool(databaseName: string, server: string): Pool {
    if (server !== 'primary') throw new Error(`unknown database server '${server}'`);
    let pool = this.orgPools.get(databaseName);
    if (pool) {
      this.orgPools.delete(databaseName); // re-insert: Map order is our LRU order
    } else {
      pool = this.createPool(withDatabase(this.config.DATABASE_APP_URL, databaseName));
    }
    this.orgPools.set(databaseName, pool);
    while (this.orgPools.size > this.config.ORG_POOL_LIMIT) {
      const [oldest, oldestPool] = this.orgPools.entries().next().value as [string, Pool];
      this.orgPools.delete(oldest);
      void oldestPool.end().catch(() => undefined);
    }
    return pool;
  }

  async onApplicationShutdown(): Promise<void> {
    const pools = [this.controlPool, ...this.orgPools.values()];
    this.orgPools.clear();
    await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  }

  private createPool(connectionString: string): Pool {
    const pool = new Pool({
      connectionString,
      max: this.config.DATABASE_POOL_MAX,
      idleTimeoutMillis: 30_000,
      application_name: `coffer-${process.env.COFFER_SERVICE ?? 'app'}`,
    });
    // An idle client losing its connection must not crash the process; the next query reconnects.
    pool.on('error', () => undefined);
    return pool;
  }
}
