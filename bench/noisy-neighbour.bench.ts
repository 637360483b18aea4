import type { AppConfig } from '@coffer/config';
import { startApiProcess, stopProcess } from '../test/support/api-process';
import { installCoffer } from '../test/support/installation';
import { createTestEnv } from '../test/support/test-env';
import { loadInChild, measure, Measurement } from './harness';

/** Concurrent clients of the noisy org: far more than its share of connections. */
const NOISY_CONNECTIONS = 64;
/** Clients of the other org, measured in this process. */
const QUIET_CONNECTIONS = 2;
const GOAL = 2;

/**
 * One org saturating the API with writes (API keys issued: an audited transaction each, so
 * every request holds its connections until its commit, and one org's commits queue on its own
 * audit chain) from 64 clients in a process of their own, while another org's reads (its package
 * list: its database, no audit entry) are measured from this one. Ratio: the other org's p99 under that load / its p99 with the API idle, both in
 * the same run (means over alternating runs: idle, loaded, idle, loaded, idle). Goal: <= 2 with the default per-org
 * share. The same load with the share lifted to the whole org budget is printed for contrast:
 * what the share protects against.
 */
export async function noisyNeighbourBenchmark(seconds: number): Promise<boolean> {
  const shared = await scenario({}, seconds, 2);
  const unshared = await scenario({ DATABASE_ORG_CONNECTION_SHARE: '17' }, seconds, 1); // 20 - 3 for the control plane
  const ok = shared.loadedRps > 0 && shared.ratio <= GOAL && shared.quietErrors === 0;
  for (const [label, run] of [[`per-org share ${shared.share} (default)`, shared], [`contrast, share ${unshared.share} (no per-org limit)`, unshared]] as const) {
    if (!run.loadedRps) {
      // Every request of the other org waited for a connection past the measurement: starved.
      console.log(`noisy-neighbour, ${label}: the other org completed no request under noisy load (idle p99 ${run.idleP99.toFixed(1)} ms); noisy org ${run.noisyRps.toFixed(0)} req/s`);
      continue;
    }
    console.log(
      `noisy-neighbour, ${label}: other org p99 ${run.loadedP99.toFixed(1)} ms under noisy load vs ${run.idleP99.toFixed(1)} ms idle ` +
        `= ratio ${run.ratio.toFixed(2)}${run === shared ? ` (goal <= ${GOAL}) ${ok ? 'MET' : 'NOT MET'}` : ''}; ` +
        `other org ${run.loadedRps.toFixed(0)} req/s (idle ${run.idleRps.toFixed(0)}), non-2xx ${run.quietErrors}; ` +
        `noisy org ${run.noisyRps.toFixed(0)} req/s, statuses ${JSON.stringify(run.noisyStatuses)}`,
    );
  }
  return ok;
}

async function scenario(overrides: Partial<Record<keyof AppConfig, string>>, seconds: number, rounds: number) {
  const env = await createTestEnv(overrides);
  // As compose and the local start do: `coffer migrate`, then the provisioner, before the API.
  const installation = await installCoffer(env.config);
  const { child, url } = await startApiProcess(env.config);
  try {
    const admin = `Bearer ${env.takeBootstrapToken()}`;
    const create = async (slug: string) => {
      const res = await fetch(`${url}/api/v1/organizations`, {
        method: 'POST',
        headers: { authorization: admin, 'content-type': 'application/json' },
        body: JSON.stringify({ slug, name: slug, admin: { email: `admin@${slug}.example`, displayName: 'Admin' } }),
      });
      const body = (await res.json()) as { admin: { user: { id: string }; apiKey: { secret: string } } };
      if (res.status !== 201) throw new Error(`creating ${slug}: ${res.status}`);
      return { userId: body.admin.user.id, authorization: `Bearer ${body.admin.apiKey.secret}` };
    };
    const [noisy, quiet] = [await create('noisy'), await create('quiet')];
    // A read of the org's database that writes nothing (listing users would append an audit entry).
    const quietUrl = `${url}/api/v1/organizations/quiet/packages`;
    const quietHeaders = { authorization: quiet.authorization };
    const noise = (duration: number) =>
      loadInChild({
        url: `${url}/api/v1/organizations/noisy/users/${noisy.userId}/api-keys`,
        method: 'POST',
        headers: { authorization: noisy.authorization, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'noise' }),
        connections: NOISY_CONNECTIONS,
        duration,
      });

    await measure(quietUrl, quietHeaders, 2, QUIET_CONNECTIONS); // warm-up: JIT, pools, caches
    await noise(2);
    // Idle and loaded alternate, idle first and last, so that drift (other load on the machine)
    // reaches both alike.
    const idle: Measurement[] = [await measure(quietUrl, quietHeaders, seconds, QUIET_CONNECTIONS)];
    const loaded: Measurement[] = [];
    const noisyRuns: Awaited<ReturnType<typeof noise>>[] = [];
    for (let round = 0; round < rounds; round++) {
      // The noisy load starts first and outlasts the measurement on both sides.
      const noisyRun = noise(seconds + 3);
      await new Promise((r) => setTimeout(r, 1500));
      loaded.push(await measure(quietUrl, quietHeaders, seconds, QUIET_CONNECTIONS));
      noisyRuns.push(await noisyRun);
      idle.push(await measure(quietUrl, quietHeaders, seconds, QUIET_CONNECTIONS));
    }
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
    const idleP99 = mean(idle.map((m) => m.p99Ms));
    const loadedP99 = mean(loaded.map((m) => m.p99Ms));
    return {
      share: env.config.DATABASE_ORG_CONNECTION_SHARE,
      loadedP99,
      idleP99,
      loadedRps: mean(loaded.map((m) => m.requestsPerSecond)),
      idleRps: mean(idle.map((m) => m.requestsPerSecond)),
      ratio: loadedP99 / idleP99,
      quietErrors: [...idle, ...loaded].reduce((s, m) => s + m.errors + m.non2xx, 0),
      noisyRps: mean(noisyRuns.map((m) => m.requestsPerSecond)),
      noisyStatuses: noisyRuns.reduce<Record<string, number>>((all, m) => {
        for (const [code, n] of Object.entries(m.statuses)) all[code] = (all[code] ?? 0) + n;
        return all;
      }, {}),
    };
  } finally {
    await stopProcess(child);
    await installation.close();
    await env.destroy();
  }
}
