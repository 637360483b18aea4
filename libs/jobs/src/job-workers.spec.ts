import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkHandlers } from './job-workers';

test('the worker refuses a registry job without a handler', () => {
  assert.deepEqual(checkHandlers([]), ["job 'expire-api-keys' has no handler"]);
});

test('the worker refuses two handlers for one job and handlers of unknown jobs', () => {
  const problems = checkHandlers([
    { name: 'expire-api-keys', owner: 'A' },
    { name: 'expire-api-keys', owner: 'B' },
    { name: 'nonexistent', owner: 'C' },
  ]);
  assert.deepEqual(problems, ["job 'expire-api-keys' has several handlers: A, B", "C handles unknown job 'nonexistent'"]);
});

test('one handler per job passes', () => {
  assert.deepEqual(checkHandlers([{ name: 'expire-api-keys', owner: 'A' }]), []);
});
