import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionBudget, DatabaseBusyError, Slot } from './connection-budget';

const tick = () => new Promise((r) => setImmediate(r));

/** Whether the promise has settled by now (without waiting for it). */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  await tick();
  return done;
}

describe('ConnectionBudget', () => {
  test('never grants more than the total; a released slot goes to the first waiter', async () => {
    const budget = new ConnectionBudget({ total: 2, perKey: 2, acquireTimeoutMs: 10_000 });
    const a = await budget.acquire('a');
    const b = await budget.acquire('b');
    const c = budget.acquire('c');
    const d = budget.acquire('d');
    assert.equal(await settled(c), false);
    assert.deepEqual([budget.inUse, budget.waiting], [2, 2]);
    a.release();
    const slotC = await c;
    assert.equal(await settled(d), false, 'd waits behind c');
    assert.deepEqual([budget.inUse, budget.inUseBy('a'), budget.inUseBy('c')], [2, 0, 1]);
    b.release();
    (await d).release();
    slotC.release();
    assert.deepEqual([budget.inUse, budget.waiting], [0, 0]);
  });

  test('a key at its share waits while other keys pass it; the share frees up for it alone', async () => {
    const budget = new ConnectionBudget({ total: 10, perKey: 2, acquireTimeoutMs: 10_000 });
    const noisy = [await budget.acquire('noisy'), await budget.acquire('noisy')];
    const third = budget.acquire('noisy');
    const quiet = budget.acquire('quiet');
    assert.equal(await settled(quiet), true, 'another org is not held back by the noisy one');
    assert.equal(await settled(third), false);
    assert.equal(budget.inUseBy('noisy'), 2);
    noisy[0].release();
    await third;
    assert.equal(budget.inUseBy('noisy'), 2);
  });

  test('a waiter that finds no slot in time fails with database_busy (503) and takes nothing later', async () => {
    const budget = new ConnectionBudget({ total: 1, perKey: 1, acquireTimeoutMs: 30 });
    const held = await budget.acquire('a');
    const started = Date.now();
    await assert.rejects(budget.acquire('b'), (error: unknown) => {
      assert.ok(error instanceof DatabaseBusyError);
      assert.deepEqual([error.code, error.status], ['database_busy', 503]);
      return true;
    });
    assert.ok(Date.now() - started >= 25, 'it waited for the acquire timeout first');
    assert.equal(budget.waiting, 0);
    held.release();
    assert.deepEqual([budget.inUse, budget.inUseBy('b')], [0, 0], 'the slot was not handed to the waiter that left');
  });

  test('releasing a slot twice gives back one slot', async () => {
    const budget = new ConnectionBudget({ total: 2, perKey: 2, acquireTimeoutMs: 1000 });
    const slot = await budget.acquire('a');
    await budget.acquire('a');
    slot.release();
    slot.release();
    assert.deepEqual([budget.inUse, budget.inUseBy('a')], [1, 1]);
  });

  test('reclaim is asked when the total holds a waiter back, once per missing slot, never for a key at its share', async () => {
    const asked: string[] = [];
    let idle: Slot[] = [];
    const budget = new ConnectionBudget({
      total: 3,
      perKey: 1,
      acquireTimeoutMs: 10_000,
      reclaim: (key) => {
        asked.push(key);
        const slot = idle.shift();
        if (!slot) return 0;
        setImmediate(() => slot.release()); // as a closing connection: its slot returns later
        return 1;
      },
    });
    idle = [await budget.acquire('x'), await budget.acquire('y')];
    const busy = await budget.acquire('z');
    const capped = budget.acquire('z'); // held back by its own share: reclaiming would not help it
    await tick();
    assert.deepEqual(asked, []);
    const first = budget.acquire('a');
    const second = budget.acquire('b');
    await Promise.all([first, second]);
    assert.deepEqual(asked, ['a', 'b'], 'one idle connection closed per waiter, not more');
    busy.release();
    await capped;
  });

  test('under random load the total and every share hold, and everyone is served', async () => {
    const total = 7;
    const perKey = 3;
    const budget = new ConnectionBudget({ total, perKey, acquireTimeoutMs: 10_000 });
    let maxTotal = 0;
    const maxByKey = new Map<string, number>();
    const keys = ['a', 'b', 'c', 'd', 'e'];
    let served = 0;
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const key = i % 2 ? 'a' : keys[i % keys.length]; // 'a' asks for more than its share
        const slot = await budget.acquire(key);
        maxTotal = Math.max(maxTotal, budget.inUse);
        maxByKey.set(key, Math.max(maxByKey.get(key) ?? 0, budget.inUseBy(key)));
        await new Promise((r) => setTimeout(r, i % 3));
        served++;
        slot.release();
      }),
    );
    assert.equal(served, 200);
    assert.equal(maxTotal, total, 'the budget was used up to, and never past, its total');
    assert.ok([...maxByKey.values()].every((n) => n <= perKey));
    assert.equal(Math.max(...maxByKey.values()), perKey);
    assert.deepEqual([budget.inUse, budget.waiting], [0, 0]);
  });
});
