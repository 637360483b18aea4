import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { getDigest, putRepeated } from '../test/support/raw-http';
import { TestWorld } from '../test/support/world';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const GOAL_MIB = 64;

/** VmRSS or VmHWM of a process, in bytes. */
function memory(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match![1]) * 1024;
}

/**
 * A 1 GiB package up and down through the API process (filesystem driver): the process's peak
 * RSS growth over a warmed-up baseline, against the goal of 64 MiB (memory flat in object size).
 * A memory target, so a benchmark and not a test: the figure varies from run to run.
 */
export async function memoryBenchmark(): Promise<boolean> {
  const world = await TestWorld.start({ process: true, orgs: ['memory'] });
  try {
    const { child } = world;
    const org = world.org('memory');
    const auth = org.headers();
    const block = randomBytes(MiB);
    const packageUrl = org.url('packages/big');
    // Warm-up: code paths, pools, KMS key, JIT; what stays allocated after it is the baseline.
    if ((await putRepeated(packageUrl, auth, 16 * MiB, block)).status !== 201) throw new Error('warm-up upload failed');
    await getDigest(`${packageUrl}/versions/1/content`, auth);
    const baseline = memory(child.pid!, 'VmRSS');
    writeFileSync(`/proc/${child.pid}/clear_refs`, '5'); // resets VmHWM to the current RSS

    const expected = createHash('sha256');
    for (let sent = 0; sent < GiB; sent += block.length) expected.update(block);
    const digest = expected.digest('hex');
    const uploaded = await putRepeated(packageUrl, auth, GiB, block);
    if (uploaded.status !== 201 || JSON.parse(uploaded.body).sha256 !== digest) throw new Error(`upload failed: ${uploaded.status}`);
    const downloaded = await getDigest(`${packageUrl}/versions/2/content`, auth);
    if (downloaded.status !== 200 || downloaded.size !== GiB || downloaded.sha256 !== digest) throw new Error('download differs');

    const growth = (memory(child.pid!, 'VmHWM') - baseline) / MiB;
    const met = growth < GOAL_MIB;
    console.log(
      `memory: API RSS ${(baseline / MiB).toFixed(1)} MiB before, peak growth ${growth.toFixed(1)} MiB over 1 GiB up and down ` +
        `(goal < ${GOAL_MIB} MiB: ${met ? 'met' : 'NOT MET'})`,
    );
    return met;
  } finally {
    await world.stop();
  }
}
