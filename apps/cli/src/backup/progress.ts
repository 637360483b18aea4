/** Progress of a long run on stderr: one line per part, and every few seconds while a part runs. */
export class Progress {
  private part?: { name: string; bytes: number; since: number; said: number };
  private readonly started = Date.now();

  constructor(
    private readonly command: string,
    private readonly out: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
    private readonly everyMs = 5000,
  ) {}

  say(message: string): void {
    this.out(`[${this.command}] ${message}`);
  }

  begin(name: string): void {
    this.part = { name, bytes: 0, since: Date.now(), said: Date.now() };
  }

  bytes(n: number): void {
    if (!this.part) return;
    this.part.bytes += n;
    if (Date.now() - this.part.said >= this.everyMs) {
      this.part.said = Date.now();
      this.say(`${this.part.name}: ${size(this.part.bytes)} so far`);
    }
  }

  end(detail = ''): void {
    if (!this.part) return;
    const seconds = ((Date.now() - this.part.since) / 1000).toFixed(1);
    this.say(`${this.part.name}: ${size(this.part.bytes)} in ${seconds} s${detail ? `, ${detail}` : ''}`);
    this.part = undefined;
  }

  elapsed(): string {
    return `${((Date.now() - this.started) / 1000).toFixed(1)} s`;
  }
}

export function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
