import { AppError } from '@coffer/http';

/**
 * No connection could be had in time: the process's connection budget (or the org's share of
 * it) stayed in use for DATABASE_ACQUIRE_TIMEOUT_MS. An AppError, so a request that meets it
 * answers 503 database_busy with Retry-After wherever it is thrown, never a 500.
 */
export class DatabaseBusyError extends AppError {
  declare readonly code: 'database_busy';
  constructor(message = 'the database is busy; retry shortly') {
    super('database_busy', message);
  }
}

/** One connection slot; release() is idempotent (a client's error and its end may both call it). */
export interface Slot {
  release(): void;
}

export interface BudgetOptions {
  /** Slots in all: the most connections the keys together hold at once. */
  total: number;
  /** Slots one key (an org database) may hold at once: a noisy org cannot take the rest. */
  perKey: number;
  /** How long acquire() waits before failing with DatabaseBusyError. */
  acquireTimeoutMs: number;
  /**
   * Called when a waiter is blocked by the total only: free idle connections of other keys
   * (close idle pools). Returns how many slots will come back (released asynchronously).
   */
  reclaim?: (forKey: string) => number;
}

interface Waiter {
  key: string;
  grant: (slot: Slot) => void;
  timer: NodeJS.Timeout;
}

/**
 * A counting semaphore of connection slots with a per-key cap. Every connection an org pool
 * opens takes a slot first and gives it back when the connection ends, so the number of open
 * connections never exceeds `total` whatever the pools do. Waiters are served first come, first
 * served, except that one whose key is at its cap lets the ones behind it pass.
 */
export class ConnectionBudget {
  private used = 0;
  private readonly byKey = new Map<string, number>();
  private readonly waiters: Waiter[] = [];
  /** Slots that reclaim() said are on their way back: not asked for twice. */
  private reclaiming = 0;

  constructor(private readonly options: BudgetOptions) {
    if (options.perKey < 1 || options.total < 1) throw new Error('connection budget: total and perKey must be at least 1');
  }

  get inUse(): number {
    return this.used;
  }

  get perKeyLimit(): number {
    return this.options.perKey;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  inUseBy(key: string): number {
    return this.byKey.get(key) ?? 0;
  }

  acquire(key: string): Promise<Slot> {
    if (!this.waiters.length && this.fits(key)) return Promise.resolve(this.take(key));
    return new Promise<Slot>((resolve, reject) => {
      const waiter: Waiter = {
        key,
        grant: resolve,
        timer: setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          reject(new DatabaseBusyError());
          // A waiter at its key's cap may have held back nobody, but one leaving can unblock others.
          this.pump();
        }, this.options.acquireTimeoutMs),
      };
      this.waiters.push(waiter);
      this.pump();
    });
  }

  /**
   * Something changed outside the budget (a pool's clients all became idle): waiters held back
   * by the total may now be helped by reclaiming.
   */
  poke(): void {
    this.pump();
  }

  private fits(key: string): boolean {
    return this.used < this.options.total && this.inUseBy(key) < this.options.perKey;
  }

  private take(key: string): Slot {
    this.used++;
    this.byKey.set(key, this.inUseBy(key) + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.used--;
        const left = this.inUseBy(key) - 1;
        if (left) this.byKey.set(key, left);
        else this.byKey.delete(key);
        if (this.reclaiming > 0) this.reclaiming--;
        this.pump();
      },
    };
  }

  /** Grants what fits, in order; then asks for idle connections back for those the total holds back. */
  private pump(): void {
    for (let i = 0; i < this.waiters.length && this.used < this.options.total; ) {
      const waiter = this.waiters[i];
      if (this.inUseBy(waiter.key) >= this.options.perKey) {
        i++;
        continue;
      }
      this.waiters.splice(i, 1);
      clearTimeout(waiter.timer);
      waiter.grant(this.take(waiter.key));
    }
    if (!this.options.reclaim) return;
    // Waiters that a free slot would serve (not those at their own key's cap).
    const blocked = this.waiters.filter((w) => this.inUseBy(w.key) < this.options.perKey);
    for (const waiter of blocked.slice(this.reclaiming)) {
      const coming = this.options.reclaim(waiter.key);
      if (!coming) break;
      this.reclaiming += coming;
      if (this.reclaiming >= blocked.length) break;
    }
  }
}
