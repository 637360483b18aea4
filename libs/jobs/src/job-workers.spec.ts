import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JOBS } from './job-registry';
import { checkHandlers } from './job-workers';

const everyJob = Object.keys(JOBS).map((name) => ({ name, owner: `${name} processor` }));

test('the worker refuses a registry job without a handler', () => {
  assert.deepEqual(checkHandlers(everyJob.filter((j) => j.name !== 'expire-api-keys')), ["job 'expire-api-keys' has no handler"]);
});

test('the worker refuses two handlers for one job and handlers of unknown jobs', () => {
  const problems = checkHandlers([
    ...everyJob.filter((j) => j.name !== 'expire-api-keys'),
    { name: 'expire-api-keys', owner: 'A' },
    { name: 'expire-api-keys', owner: 'B' },
    { name: 'nonexistent', owner: 'C' },
  ]);
  assert.deepEqual(problems, ["job 'expire-api-keys' has several handlers: A, B", "C handles unknown job 'nonexistent'"]);
});

test('one handler per job passes', () => {
  assert.deepEqual(checkHandlers(everyJob), []);
});
