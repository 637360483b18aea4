import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AppConfig } from '@coffer/config';
import { createStorageDriver } from '@coffer/storage';
import { startApiProcess, stopProcess } from '../test/support/api-process';
import { getDigest, putRepeated } from '../test/support/raw-http';
import { startS3 } from '../test/support/s3-server';
import { installCoffer } from '../test/support/installation';
import { createTestEnv } from '../test/support/test-env';

const MiB = 1024 ** 2;
const SIZE = 256 * MiB;
const BUCKET = 'coffer-bench';

/**
 * A 256 MiB package uploaded and downloaded through the API (HTTP, streaming AEAD, SHA-256,
 * KMS, audit) against the same bytes written and read with the same storage driver in
 * chunk-sized objects, with no encryption and no API, same run. Goal: ratio >= 0.8 on the
 * filesystem driver, both ways; the s3 driver (s3rver) is reported without a goal.
 */
export async function packagesBenchmark(): Promise<boolean> {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-bench-'));
  const s3 = await startS3([BUCKET]);
  try {
    const filesystem = await runOn('filesystem', { STORAGE_DIR: join(dir, 'store') }, 0.8);
    await runOn('s3 (s3rver)', { STORAGE_DRIVER: 's3', S3_ENDPOINT: s3.endpoint, S3_BUCKET: BUCKET, S3_ACCESS_KEY: s3.accessKeyId, S3_SECRET_KEY: s3.secretAccessKey }, 0);
    return filesystem;
  } finally {
    await s3.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runOn(name: string, overrides: Record<string, string>, goal: number): Promise<boolean> {
  const env = await createTestEnv(overrides);
  // As compose and the local start do: `coffer migrate`, then the provisioner, before the API.
  const installation = await installCoffer(env.config);
  const { child, url } = await startApiProcess(env.config);
  const block = randomBytes(MiB);
  try {
    const admin = { authorization: `Bearer ${env.takeBootstrapToken()}`, 'content-type': 'application/json' };
    const created = await fetch(`${url}/api/v1/organizations`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ slug: 'bench', name: 'Bench', admin: { email: 'bench@bench.example', displayName: 'Bench' } }),
    });
    const auth = { authorization: `Bearer ${((await created.json()) as { admin: { apiKey: { secret: string } } }).admin.apiKey.secret}` };
    const packageUrl = `${url}/api/v1/organizations/bench/packages/bench`;

    let version = 0;
    const api = {
      upload: async () => {
        const res = await putRepeated(packageUrl, auth, SIZE, block);
        if (res.status !== 201) throw new Error(`upload: ${res.status} ${res.body}`);
        version = JSON.parse(res.body).version;
      },
      download: async () => {
        // Bytes counted, not hashed: the baseline's read hashes nothing either.
        const res = await getDigest(`${packageUrl}/versions/${version}/content`, auth, { digest: false });
        if (res.status !== 200 || res.size !== SIZE) throw new Error(`download: ${res.status}, ${res.size} bytes`);
      },
    };
    const plain = plainStorage(env.config, block);

    await api.upload(); // warm-up: JIT, pools, the org's KMS key
    await api.download();
    await plain.write();
    await plain.read();
    // Alternated, twice each, so that drift hits both alike.
    const runs = { apiUp: [] as number[], apiDown: [] as number[], plainUp: [] as number[], plainDown: [] as number[] };
    for (let i = 0; i < 2; i++) {
      runs.plainUp.push(await rate(plain.write));
      runs.apiUp.push(await rate(api.upload));
      runs.plainDown.push(await rate(plain.read));
      runs.apiDown.push(await rate(api.download));
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    let met = true;
    for (const [direction, subject, baseline] of [
      ['upload', mean(runs.apiUp), mean(runs.plainUp)],
      ['download', mean(runs.apiDown), mean(runs.plainDown)],
    ] as const) {
      const ratio = subject / baseline;
      const ok = ratio >= goal;
      met &&= ok;
      console.log(
        `packages (${name}): ${direction} of 256 MiB through the API ${subject.toFixed(0)} MiB/s vs plain driver ${baseline.toFixed(0)} MiB/s ` +
          `= ratio ${ratio.toFixed(2)}${goal ? ` (goal >= ${goal}) ${ok ? 'MET' : 'NOT MET'}` : ''}`,
      );
    }
    return met;
  } finally {
    await stopProcess(child);
    await installation.close();
    await env.destroy();
  }
}

/** The same bytes in chunk-sized objects with the same driver: no encryption, no HTTP API. */
function plainStorage(config: AppConfig, block: Buffer) {
  const driver = createStorageDriver(config);
  const chunk = config.PACKAGE_CHUNK_BYTES;
  const keys = Array.from({ length: Math.ceil(SIZE / chunk) }, (_, i) => `bench/plain/chunk-${String(i).padStart(8, '0')}`);
  const body = Buffer.concat(Array.from({ length: Math.ceil(chunk / block.length) }, () => block)).subarray(0, chunk);
  return {
    write: async () => {
      await driver.ready();
      for (const key of keys) await driver.put(key, body);
    },
    read: async () => {
      let size = 0;
      for (const key of keys) for await (const part of await driver.get(key)) size += (part as Buffer).length;
      if (size !== keys.length * chunk) throw new Error(`plain read ${size} bytes`);
    },
  };
}

/** MiB per second of one run of `work` over SIZE bytes. */
async function rate(work: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await work();
  return SIZE / MiB / (Number(process.hrtime.bigint() - start) / 1e9);
}
