import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { Pool } from 'pg';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { BudgetedPools, PoolsSettings } from './budgeted-pools';
import { withDatabase } from './pg';
import { UnitOfWork } from './unit-of-work';

/**
 * Connection pools of the app role: the control plane, and one pool per org database, opened on
 * demand, all within the process's connection budget (DATABASE_CONNECTION_BUDGET; see
 * BudgetedPools and docs/database-sizing.md). Nothing here can run DDL. While a unit of work is
 * active (a mutating request or a job), what it hands out runs on the unit's transaction instead.
 */
/** The unit-of-work key of the control-plane database (org databases use their names). */
export const CONTROL = 'control';

export function poolsSettings(config: AppConfig): PoolsSettings {
  return {
    budget: config.DATABASE_CONNECTION_BUDGET,
    control: config.DATABASE_CONTROL_CONNECTIONS,
    orgShare: config.DATABASE_ORG_CONNECTION_SHARE,
    acquireTimeoutMs: config.DATABASE_ACQUIRE_TIMEOUT_MS,
    idleTimeoutMs: config.DATABASE_IDLE_TIMEOUT_MS,
    applicationName: `coffer-${process.env.COFFER_SERVICE ?? 'app'}`,
  };
}

@Injectable()
export class DatabaseService implements OnApplicationShutdown {
  private readonly pools: BudgetedPools;
  private readonly controlPool: Pool;

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {
    this.pools = new BudgetedPools(config.DATABASE_APP_URL, poolsSettings(config));
    this.controlPool = this.pools.control();
  }

  get control(): Pool {
    return UnitOfWork.current()?.pool(CONTROL, this.controlPool) ?? this.controlPool;
  }

  /** The app-role pool of one org database. `server` is the registry's database_server. */
  org(databaseName: string, server = 'primary'): Pool {
    if (server !== 'primary') throw new Error(`unknown database server '${server}'`);
    const pool = this.pools.org(databaseName, () => withDatabase(this.config.DATABASE_APP_URL, databaseName));
    return UnitOfWork.current()?.pool(databaseName, pool) ?? pool;
  }

  /** Connections this process holds now, and callers waiting for one. */
  get connections() {
    return this.pools.open;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.pools.end();
  }
}
