import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '@coffer/config';
import { JOBS } from './job-registry';
import { checkSchedules, scheduledJobs } from './job-scheduler';
import { checkHandlers } from './job-workers';

const everyJob = Object.keys(JOBS)
  .filter((name) => JOBS[name as keyof typeof JOBS].queue === 'maintenance')
  .map((name) => ({ name, owner: `${name} processor` }));
const maintenance = ['maintenance'] as const;

test('the worker refuses a registry job without a handler', () => {
  assert.deepEqual(checkHandlers(everyJob.filter((j) => j.name !== 'expire-api-keys'), maintenance), ["job 'expire-api-keys' has no handler"]);
});

test('the worker refuses two handlers for one job and handlers of unknown jobs', () => {
  const problems = checkHandlers([
    ...everyJob.filter((j) => j.name !== 'expire-api-keys'),
    { name: 'expire-api-keys', owner: 'A' },
    { name: 'expire-api-keys', owner: 'B' },
    { name: 'nonexistent', owner: 'C' },
    { name: 'provision-org', owner: 'D' },
  ], maintenance);
  assert.deepEqual(problems, [
    "job 'expire-api-keys' has several handlers: A, B",
    "C handles unknown job 'nonexistent'",
    "D handles 'provision-org' of queue 'provisioning', which this process does not consume",
  ]);
});

test('one handler per job of the consumed queues passes; the provisioner needs only its own', () => {
  assert.deepEqual(checkHandlers(everyJob, maintenance), []);
  assert.deepEqual(checkHandlers([{ name: 'provision-org', owner: 'P' }], ['provisioning']), []);
  assert.deepEqual(checkHandlers([], ['provisioning']), ["job 'provision-org' has no handler"]);
});

const config = loadConfig({ DATABASE_APP_URL: 'postgres://a@127.0.0.1/coffer' });

test("every schedule of the registry names a setting that holds a cron expression", () => {
  assert.deepEqual(checkSchedules(JOBS, config), []);
  assert.ok(scheduledJobs().some(([name, s]) => name === 'find-key-rotations' && s.cron === 'KEY_ROTATION_CRON' && s.fanOut === 'global'));
});

test('the worker refuses a schedule whose cron setting is unknown or not a cron expression, or whose fan-out is unknown', () => {
  const jobs = {
    ...JOBS,
    'made-up': { schedule: { cron: 'NO_SUCH_CRON', fanOut: 'global' } },
    'odd-fan-out': { schedule: { cron: 'ALERT_CHECK_CRON', fanOut: 'per-user' } },
  } as unknown as typeof JOBS;
  const [badCron, ...others] = checkSchedules(jobs, { ...config, KEY_ROTATION_CRON: 'every hour' });
  assert.match(badCron, /^job 'find-key-rotations': KEY_ROTATION_CRON 'every hour' is not a cron expression \(.+\)$/);
  assert.deepEqual(others, [
    "job 'made-up' is scheduled by unknown setting 'NO_SUCH_CRON'",
    "job 'odd-fan-out' has unknown fan-out 'per-user'",
  ]);
});
