import request from 'supertest';
import { startApiProcess, stopProcess } from '../test/support/api-process';
import { installCoffer } from '../test/support/installation';
import { createTestEnv } from '../test/support/test-env';
import { measure, report } from './harness';

/**
 * An authenticated org route (API key checked against the org database on every request)
 * against GET /health/live of the same server, same client, same run. Goal: ratio >= 0.5,
 * i.e. key verification is one indexed query and a SHA-256, not a password hash.
 */
export async function authBenchmark(seconds: number): Promise<boolean> {
  const env = await createTestEnv();
  // As compose and the local start do: `coffer migrate`, then the provisioner, before the API.
  const installation = await installCoffer(env.config);
  const { child, url } = await startApiProcess(env.config);
  try {
    const admin = `Bearer ${env.takeBootstrapToken()}`;
    const org = await request(url)
      .post('/api/v1/organizations')
      .set('authorization', admin)
      .send({ slug: 'bench', name: 'Bench', admin: { email: 'bench@bench.example', displayName: 'Bench' } });
    const key = { authorization: `Bearer ${org.body.admin.apiKey.secret}` };
    const health = `${url}/health/live`;
    const orgRoute = `${url}/api/v1/organizations/bench`;

    await measure(health, {}, 2); // warm-up: JIT, pools
    await measure(orgRoute, key, 2);
    // Alternate the two so that drift (thermal, other load) hits both alike.
    const baseline = [await measure(health, {}, seconds)];
    const subject = [await measure(orgRoute, key, seconds)];
    baseline.push(await measure(health, {}, seconds));
    subject.push(await measure(orgRoute, key, seconds));
    const mean = (runs: typeof baseline) => ({
      requestsPerSecond: runs.reduce((s, r) => s + r.requestsPerSecond, 0) / runs.length,
      p99Ms: Math.max(...runs.map((r) => r.p99Ms)),
      errors: runs.reduce((s, r) => s + r.errors, 0),
      non2xx: runs.reduce((s, r) => s + r.non2xx, 0),
    });
    return report('auth: GET /api/v1/organizations/:org (API key) vs GET /health/live', mean(subject), mean(baseline), 0.5);
  } finally {
    await stopProcess(child);
    await installation.close();
    await env.destroy();
  }
}
