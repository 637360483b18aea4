import type { KmsProvider } from '@coffer/kms';

/** The first wait after a failed probe; it doubles per failure up to MAX_DELAY_MS. */
const FIRST_DELAY_MS = 1_000;
const MAX_DELAY_MS = 5 * 60_000;

/**
 * The flush's health probe: asks the KMS whether it answers and is unsealed, and after each
 * failure waits twice as long before asking again (1 s, 2 s, 4 s ... 5 min), so a long outage
 * costs a trickle of probes, and the first success resets it.
 */
export class KmsProbe {
  private failures = 0;
  private nextAt = 0;

  constructor(
    private readonly kms: Pick<KmsProvider, 'health'>,
    private readonly now: () => number = Date.now,
  ) {}

  /** false without asking while backing off. */
  async up(): Promise<boolean> {
    if (this.now() < this.nextAt) return false;
    const health = await this.kms.health();
    if (health.reachable && !health.sealed) {
      this.failures = 0;
      this.nextAt = 0;
      return true;
    }
    this.nextAt = this.now() + Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.failures);
    this.failures++;
    return false;
  }
}
