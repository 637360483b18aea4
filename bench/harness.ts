import { spawn } from 'node:child_process';
import { join } from 'node:path';
import autocannon from 'autocannon';

export interface Measurement {
  requestsPerSecond: number;
  p99Ms: number;
  errors: number;
  non2xx: number;
}

/** One autocannon run against a running server (a separate process: it gets its own core). */
export async function measure(url: string, headers: Record<string, string>, seconds: number, connections = 16): Promise<Measurement> {
  const result = await autocannon({ url, headers, duration: seconds, connections });
  return {
    requestsPerSecond: result.requests.average,
    p99Ms: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  };
}

/** Prints a benchmark line: both figures, the ratio, the goal and whether it was met. */
export function report(name: string, subject: Measurement, baseline: Measurement, goal: number): boolean {
  const ratio = subject.requestsPerSecond / baseline.requestsPerSecond;
  const ok = ratio >= goal && subject.errors + subject.non2xx === 0;
  console.log(
    `${name}: ${subject.requestsPerSecond.toFixed(0)} req/s (p99 ${subject.p99Ms} ms) vs baseline ` +
      `${baseline.requestsPerSecond.toFixed(0)} req/s (p99 ${baseline.p99Ms} ms) = ratio ${ratio.toFixed(2)} ` +
      `(goal >= ${goal}) ${ok ? 'MET' : 'NOT MET'}; errors ${subject.errors}, non-2xx ${subject.non2xx}`,
  );
  return ok;
}

/** Load from a child process (bench/load-process.ts) until it ends; resolves with its figures. */
export function loadInChild(options: { url: string; method?: string; headers?: Record<string, string>; body?: string; connections: number; duration: number }) {
  const child = spawn(process.execPath, [join(__dirname, 'load-process.js'), JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk));
  return new Promise<Measurement & { statuses: Record<string, number> }>((resolve, reject) => {
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`load process exited with ${code}`))));
  });
}
