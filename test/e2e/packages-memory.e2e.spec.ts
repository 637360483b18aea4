import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { getDigest, putRepeated } from '../support/raw-http';
import { TestWorld } from '../support/world';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** VmRSS or VmHWM of a process, in bytes. */
function memory(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match![1]) * 1024;
}

describe('memory: a 1 GiB package up and down through the API process (filesystem driver)', () => {
  let world: TestWorld;

  before(async () => {
    world = await TestWorld.start({ process: true, orgs: ['memory'] });
  });

  after(() => world?.stop());

  test("uploading then downloading 1 GiB grows the API process's RSS by less than 64 MiB", async () => {
    const { child } = world;
    const org = world.org('memory');
    const auth = org.headers();
    const block = randomBytes(MiB);
    const packageUrl = org.url('packages/big');
    // Warm-up: code paths, pools, KMS key, JIT; what stays allocated after it is the baseline.
    assert.equal((await putRepeated(packageUrl, auth, 16 * MiB, block)).status, 201);
    assert.equal((await getDigest(`${packageUrl}/versions/1/content`, auth)).size, 16 * MiB);

    const baseline = memory(child.pid!, 'VmRSS');
    writeFileSync(`/proc/${child.pid}/clear_refs`, '5'); // resets VmHWM to the current RSS

    const expected = createHash('sha256');
    for (let sent = 0; sent < GiB; sent += block.length) expected.update(block);
    const digest = expected.digest('hex');
    const uploaded = await putRepeated(packageUrl, auth, GiB, block);
    assert.equal(uploaded.status, 201, uploaded.body);
    assert.equal(JSON.parse(uploaded.body).sha256, digest);
    const downloaded = await getDigest(`${packageUrl}/versions/2/content`, auth);
    assert.equal(downloaded.status, 200);
    assert.equal(downloaded.size, GiB);
    assert.equal(downloaded.sha256, digest);

    const growth = memory(child.pid!, 'VmHWM') - baseline;
    console.log(`api process: RSS ${(baseline / MiB).toFixed(1)} MiB before, peak growth ${(growth / MiB).toFixed(1)} MiB over 1 GiB up and down`);
    assert.ok(growth < 64 * MiB, `peak RSS grew by ${(growth / MiB).toFixed(1)} MiB`);
  });
});
