import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '@coffer/config';
import { randomId } from '@coffer/crypto';
import { JobsService } from '@coffer/jobs';
import { OrderLock } from '@coffer/tls';
import { deleteRedisKeys, REDIS_URL } from '../support/test-env';

const config = loadConfig({
  DATABASE_OWNER_URL: 'postgres://unused@127.0.0.1/unused',
  DATABASE_APP_URL: 'postgres://unused@127.0.0.1/unused',
  REDIS_URL,
  REDIS_KEY_PREFIX: `coffer-test-lock-${randomId(4)}`,
});
// Two replicas: separate Redis connections, one installation.
const replicas = [new JobsService(config), new JobsService(config)];
const locks = replicas.map((jobs) => new OrderLock(config, jobs));

after(async () => {
  await deleteRedisKeys(config.REDIS_KEY_PREFIX);
  for (const jobs of replicas) await jobs.onApplicationShutdown();
});

test('one replica at a time orders a certificate (Redis lock), and the lock is free again afterwards', async () => {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const first = locks[0].run('acme-order', 60_000, () => held);
  await new Promise((r) => setTimeout(r, 50));
  let ran = false;
  assert.equal(await locks[1].run('acme-order', 60_000, async () => void (ran = true)), false);
  assert.equal(ran, false, 'the second replica did not order while the first held the lock');
  release();
  assert.equal(await first, true);
  assert.equal(await locks[1].run('acme-order', 60_000, async () => void (ran = true)), true);
  assert.equal(ran, true);
});

test('a lock that expired and was taken by another replica is not released by its first holder', async () => {
  const slow = locks[0].run('renew', 100, () => new Promise((r) => setTimeout(r, 300)));
  await new Promise((r) => setTimeout(r, 150));
  let release!: () => void;
  const second = locks[1].run('renew', 60_000, () => new Promise<void>((r) => (release = r)));
  await slow;
  assert.equal(await locks[0].run('renew', 60_000, async () => undefined), false, 'still held by the second replica');
  release();
  assert.equal(await second, true);
});
