import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { startApiProcess, startWorkerProcess, stopProcess } from '../test/support/api-process';
import { installCoffer } from '../test/support/installation';
import { createTestEnv } from '../test/support/test-env';

const KiB = 1024;
/** Stored data keys the worker rewraps after each rotation (besides the org's field keys). */
const SEEDED_VERSIONS = 300;
const DOWNLOAD_PACKAGES = 4;
const DOWNLOAD_BYTES = 256 * KiB;
const CLIENTS = { download: 6, fieldWrite: 4, status: 1 };
const ROTATE_EVERY_MS = 1000;
const GOALS = { p99Ratio: 1.2, statusP99Ms: 50 };

type Kind = keyof typeof CLIENTS;

interface Phase {
  latencies: Record<Kind, number[]>;
  errors: Record<Kind, string[]>;
  seconds: number;
  rotations: number[];
  rotationErrors: string[];
  /** Milliseconds from the phase's end until the worker had rewrapped every data key. */
  rewrapCatchUpMs?: number;
  /** CPU seconds the API and the worker process used in the phase. */
  cpu: { api: number; worker: number };
}

/**
 * Package downloads, field writes (users: sealed email and blind index) and the
 * encryption-status endpoint under a fixed concurrent load, with a key rotation through the API
 * every second (the worker process rewrapping every stored data key after each), against the
 * same load with no rotation, alternated in one run. Goals: p99 during rotation <= 1.2x without,
 * for downloads and field writes; zero errors; status p99 < 50 ms.
 */
export async function rotationBenchmark(seconds: number): Promise<boolean> {
  const env = await createTestEnv();
  // As compose and the local start do: `coffer migrate`, then the provisioner, before the API.
  const installation = await installCoffer(env.config);
  let api: ChildProcess | undefined;
  let worker: ChildProcess | undefined;
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  try {
    const started = await startApiProcess(env.config);
    api = started.child;
    worker = await startWorkerProcess(env.config);
    const call = client(started.url, agent);
    const created = await call('POST', '/api/v1/organizations', env.takeBootstrapToken(), {
      slug: 'bench',
      name: 'Bench',
      admin: { email: 'bench@bench.example', displayName: 'Bench' },
    });
    if (created.status !== 201) throw new Error(`create org: ${created.status} ${created.text}`);
    const token = JSON.parse(created.text).admin.apiKey.secret as string;
    const org = '/api/v1/organizations/bench';

    for (let i = 0; i < SEEDED_VERSIONS; i++) await must(call('PUT', `${org}/packages/seed-${i % 10}`, token, randomBytes(KiB)), 201, 'seed upload');
    const content = randomBytes(DOWNLOAD_BYTES);
    for (let i = 0; i < DOWNLOAD_PACKAGES; i++) await must(call('PUT', `${org}/packages/read-${i}`, token, content), 201, 'upload');

    let [read, written] = [0, 0];
    const work: Record<Kind, () => Promise<{ status: number; text: string }>> = {
      download: async () => {
        const res = await call('GET', `${org}/packages/read-${read++ % DOWNLOAD_PACKAGES}/versions/1/content`, token);
        return res.status === 200 && res.size !== DOWNLOAD_BYTES ? { status: 0, text: `${res.size} bytes` } : res;
      },
      fieldWrite: () =>
        call('POST', `${org}/users`, token, { email: `user-${written++}-${randomBytes(4).toString('hex')}@bench.example`, displayName: 'Bench user', role: 'member' }),
      status: () => call('GET', `${org}/encryption-status`, token),
    };
    const rotate = () => call('POST', `${org}/keys/rotate`, token);
    const rewrapDone = async () => {
      const res = await call('GET', `${org}/keys`, token);
      return res.status === 200 && JSON.parse(res.text).rewrap.remaining === 0;
    };

    const pids = { api: api.pid!, worker: worker.pid! };
    await runPhase(work, pids, Math.min(2, seconds)); // warm-up: JIT, pools, caches
    const without: Phase[] = [];
    const during: Phase[] = [];
    // Alternated, three times each, so that drift (other load on the machine) hits both alike.
    for (let i = 0; i < 3; i++) {
      without.push(await runPhase(work, pids, seconds));
      const phase = await runPhase(work, pids, seconds, rotate);
      const end = Date.now();
      while (!(await rewrapDone())) {
        if (Date.now() - end > 60_000) throw new Error('the worker did not finish rewrapping within a minute');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      phase.rewrapCatchUpMs = Date.now() - end;
      during.push(phase);
    }
    return report(without, during);
  } finally {
    agent.destroy();
    await stopProcess(worker);
    await stopProcess(api);
    await installation.close();
    await env.destroy();
  }
}

/** Every client loops until the phase ends; `rotate`, if given, runs every ROTATE_EVERY_MS. */
async function runPhase(
  work: Record<Kind, () => Promise<{ status: number; text: string }>>,
  pids: { api: number; worker: number },
  seconds: number,
  rotate?: () => Promise<{ status: number; text: string }>,
): Promise<Phase> {
  const phase: Phase = {
    latencies: { download: [], fieldWrite: [], status: [] },
    errors: { download: [], fieldWrite: [], status: [] },
    seconds,
    rotations: [],
    rotationErrors: [],
    cpu: { api: -cpuSeconds(pids.api), worker: -cpuSeconds(pids.worker) },
  };
  const end = Date.now() + seconds * 1000;
  const ok = (status: number) => status >= 200 && status < 300;
  const timed = async (request: () => Promise<{ status: number; text: string }>, latencies: number[], errors: string[]) => {
    const start = process.hrtime.bigint();
    try {
      const res = await request();
      if (ok(res.status)) latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
      else errors.push(`${res.status} ${res.text.slice(0, 200)}`);
    } catch (error) {
      errors.push((error as Error).message);
    }
  };
  const loops = (Object.keys(CLIENTS) as Kind[]).flatMap((kind) =>
    Array.from({ length: CLIENTS[kind] }, async () => {
      while (Date.now() < end) await timed(work[kind], phase.latencies[kind], phase.errors[kind]);
    }),
  );
  if (rotate) {
    loops.push(
      (async () => {
        for (let next = Date.now(); next < end; next += ROTATE_EVERY_MS) {
          await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - Date.now())));
          await timed(rotate, phase.rotations, phase.rotationErrors);
        }
      })(),
    );
  }
  await Promise.all(loops);
  phase.cpu.api += cpuSeconds(pids.api);
  phase.cpu.worker += cpuSeconds(pids.worker);
  return phase;
}

/** User plus system CPU seconds a process has used so far (Linux /proc; clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function merge(phases: Phase[]): Phase {
  const kinds = Object.keys(CLIENTS) as Kind[];
  return {
    latencies: Object.fromEntries(kinds.map((k) => [k, phases.flatMap((p) => p.latencies[k])])) as Phase['latencies'],
    errors: Object.fromEntries(kinds.map((k) => [k, phases.flatMap((p) => p.errors[k])])) as Phase['errors'],
    seconds: phases.reduce((s, p) => s + p.seconds, 0),
    rotations: phases.flatMap((p) => p.rotations),
    rotationErrors: phases.flatMap((p) => p.rotationErrors),
    rewrapCatchUpMs: Math.max(...phases.map((p) => p.rewrapCatchUpMs ?? 0)),
    cpu: { api: phases.reduce((s, p) => s + p.cpu.api, 0), worker: phases.reduce((s, p) => s + p.cpu.worker, 0) },
  };
}

function percentile(values: number[], q: number): number {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

function report(withoutPhases: Phase[], duringPhases: Phase[]): boolean {
  const [without, during] = [merge(withoutPhases), merge(duringPhases)];
  const f = (ms: number) => ms.toFixed(1);
  const line = (phase: Phase, kind: Kind) => {
    const l = phase.latencies[kind];
    return `${(l.length / phase.seconds).toFixed(0)} req/s, p50 ${f(percentile(l, 0.5))} ms, p99 ${f(percentile(l, 0.99))} ms, errors ${phase.errors[kind].length}`;
  };
  let met = true;
  for (const [kind, label] of [
    ['download', `package download (${DOWNLOAD_BYTES / KiB} KiB)`],
    ['fieldWrite', 'field write (create user)'],
  ] as const) {
    const ratio = percentile(during.latencies[kind], 0.99) / percentile(without.latencies[kind], 0.99);
    const throughput = during.latencies[kind].length / without.latencies[kind].length;
    const ok = ratio <= GOALS.p99Ratio && during.errors[kind].length + without.errors[kind].length === 0;
    met &&= ok;
    console.log(
      `rotation: ${label}: during rotation ${line(during, kind)}; without ${line(without, kind)}; ` +
        `p99 ratio ${ratio.toFixed(2)} (goal <= ${GOALS.p99Ratio}), throughput ratio ${throughput.toFixed(2)} ${ok ? 'MET' : 'NOT MET'}`,
    );
  }
  const statusP99 = Math.max(percentile(during.latencies.status, 0.99), percentile(without.latencies.status, 0.99));
  const statusOk = statusP99 < GOALS.statusP99Ms && during.errors.status.length + without.errors.status.length === 0;
  met &&= statusOk;
  console.log(
    `rotation: encryption-status: during rotation ${line(during, 'status')}; without ${line(without, 'status')}; ` +
      `p99 ${f(statusP99)} ms (goal < ${GOALS.statusP99Ms} ms) ${statusOk ? 'MET' : 'NOT MET'}`,
  );
  const rotationsOk = during.rotationErrors.length === 0;
  met &&= rotationsOk;
  console.log(
    `rotation: ${during.rotations.length} rotations (p50 ${f(percentile(during.rotations, 0.5))} ms, p99 ${f(percentile(during.rotations, 0.99))} ms), ` +
      `errors ${during.rotationErrors.length}; ${SEEDED_VERSIONS + DOWNLOAD_PACKAGES + 2} data keys rewrapped after each, ` +
      `caught up at most ${during.rewrapCatchUpMs} ms after a phase ended`,
  );
  const cores = (phase: Phase, process: 'api' | 'worker') => (phase.cpu[process] / phase.seconds).toFixed(2);
  console.log(
    `rotation: CPU (cores busy) during rotation: API ${cores(during, 'api')}, worker ${cores(during, 'worker')}; ` +
      `without: API ${cores(without, 'api')}, worker ${cores(without, 'worker')}`,
  );
  const each = (kind: Kind) =>
    withoutPhases.map((w, i) => (percentile(duringPhases[i].latencies[kind], 0.99) / percentile(w.latencies[kind], 0.99)).toFixed(2)).join(', ');
  console.log(`rotation: p99 ratio of each alternation: download ${each('download')}; field write ${each('fieldWrite')}`);
  for (const error of [...Object.values(without.errors).flat(), ...Object.values(during.errors).flat(), ...during.rotationErrors].slice(0, 5)) {
    console.log(`  error: ${error}`);
  }
  return met;
}

async function must(response: Promise<{ status: number; text: string }>, status: number, what: string): Promise<void> {
  const res = await response;
  if (res.status !== status) throw new Error(`${what}: ${res.status} ${res.text}`);
}

/** One request on a keep-alive connection: status, body as text (JSON) or only counted (content). */
function client(base: string, agent: Agent) {
  return (method: string, path: string, token: string, body?: unknown) =>
    new Promise<{ status: number; text: string; size: number }>((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
      const headers: Record<string, string> = { authorization: `Bearer ${token}` };
      if (payload) {
        headers['content-type'] = Buffer.isBuffer(body) ? 'application/octet-stream' : 'application/json';
        headers['content-length'] = String(payload.length);
      }
      const req = httpRequest(`${base}${path}`, { method, headers, agent }, (res) => {
        const json = String(res.headers['content-type']).startsWith('application/json');
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (part: Buffer) => {
          size += part.length;
          if (json) parts.push(part);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString(), size }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: no answer in 30 s`)));
      req.end(payload);
    });
}
