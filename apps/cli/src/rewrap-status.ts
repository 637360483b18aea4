/** What rewrap:status needs of GET .../keys's answer (KeyRotationService.describe). */
export interface KeyView {
  latestVersion: number;
  rewrap: { remaining: number };
}

export interface WaitOptions {
  /** Gives up (exit 2) after this long without the remaining count going down. */
  stallMs: number;
  /** Between two reads. */
  intervalMs: number;
  /** Where progress goes: a bar redrawn in place on a terminal, else one line per change. */
  stream: NodeJS.WriteStream;
}

export interface WaitResult<V> {
  view: V;
  /** Nothing remains under an older version. */
  done: boolean;
  /** How long the last count stood still, when it gave up. */
  stalledMs?: number;
}

/**
 * Reads the org key's state until no stored data key is wrapped under an older version than the
 * latest (the worker's rewrap-keys job moves them), drawing progress on `stream`. Stops without
 * success when the count has not gone down for `stallMs` (no worker running, the KMS failing):
 * the caller exits 2. A rotation meanwhile raises the count, and the bar's total with it.
 */
export async function waitForRewrap<V extends KeyView>(read: () => Promise<V>, options: WaitOptions): Promise<WaitResult<V>> {
  const progress = new Progress(options.stream);
  let view = await read();
  let total = view.rewrap.remaining;
  let lowest = view.rewrap.remaining;
  let progressAt = Date.now();
  progress.show(view, total);
  try {
    while (view.rewrap.remaining > 0) {
      const still = Date.now() - progressAt;
      if (still >= options.stallMs) return { view, done: false, stalledMs: still };
      await new Promise((resolve) => setTimeout(resolve, Math.min(options.intervalMs, options.stallMs - still)));
      view = await read();
      const { remaining } = view.rewrap;
      // Down is progress; up is a rotation meanwhile: a new count to bring down, timed afresh.
      if (remaining !== lowest) progressAt = Date.now();
      lowest = remaining;
      total = Math.max(total, remaining);
      progress.show(view, total);
    }
    return { view, done: true };
  } finally {
    progress.end();
  }
}

class Progress {
  private last = '';

  constructor(private readonly stream: NodeJS.WriteStream) {}

  private get tty(): boolean {
    return this.stream.isTTY === true;
  }

  show(view: KeyView, total: number): void {
    const { remaining } = view.rewrap;
    const done = total - remaining;
    const text = total === 0
      ? `rewrap: nothing wrapped under a version older than v${view.latestVersion}`
      : `${done}/${total} data keys rewrapped to v${view.latestVersion}, ${remaining} remaining`;
    if (text === this.last) return;
    this.last = text;
    if (!this.tty) {
      this.stream.write(`${text.startsWith('rewrap:') ? text : `rewrap: ${text}`}\n`);
      return;
    }
    const width = 30;
    const filled = total === 0 ? width : Math.round((done / total) * width);
    const percent = total === 0 ? 100 : Math.floor((done / total) * 100);
    this.stream.write(`\r\x1b[K[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(percent).padStart(3)}% ${text}`);
  }

  end(): void {
    if (this.tty && this.last) this.stream.write('\n');
  }
}
