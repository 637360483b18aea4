import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { KmsProbe } from './kms-probe';

describe('the spool flush health probe', () => {
  test('backs off 1 s, 2 s, 4 s ... after failures, at most 5 minutes, and resets on success', async () => {
    let now = 0;
    let up = false;
    let asked = 0;
    const probe = new KmsProbe({ health: async () => (asked++, { reachable: up, sealed: false }) }, () => now);
    const askedAt: number[] = [];
    for (now = 0; now <= 20_000; now += 250) {
      const before = asked;
      await probe.up();
      if (asked > before) askedAt.push(now);
    }
    assert.deepEqual(askedAt, [0, 1000, 3000, 7000, 15000]);
    for (let i = 0; i < 20; i++) {
      now += 10 * 60_000;
      await probe.up();
    }
    const before = asked;
    now += 5 * 60_000 - 1;
    await probe.up();
    assert.equal(asked, before, 'waits up to 5 minutes');
    now += 1;
    up = true;
    assert.equal(await probe.up(), true);
    up = false;
    assert.equal(await probe.up(), false);
    assert.equal(await probe.up(), false);
    assert.equal(asked, before + 2, 'a success resets the backoff to 1 s');
  });

  test('a sealed KMS counts as down', async () => {
    assert.equal(await new KmsProbe({ health: async () => ({ reachable: true, sealed: true }) }).up(), false);
  });
});
