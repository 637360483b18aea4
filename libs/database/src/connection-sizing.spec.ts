import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '@coffer/config';
import { connectionSizing, ConnectionSizingError, OWNER_CONNECTIONS_PER_PROCESS } from './connection-sizing';

const urls = { DATABASE_OWNER_URL: 'postgres://o@127.0.0.1/coffer', DATABASE_APP_URL: 'postgres://a@127.0.0.1/coffer' };
const stockServer = { maxConnections: 100, superuserReserved: 3, reserved: 0 };

test('the defaults (1 API + 1 worker, budget 20) fit a stock PostgreSQL (max_connections 100)', () => {
  const sizing = connectionSizing(loadConfig(urls), stockServer);
  assert.equal(sizing.ok, true, sizing.message);
  assert.equal(sizing.needed, 2 * (20 + OWNER_CONNECTIONS_PER_PROCESS) + 5);
  assert.equal(sizing.available, 97);
});

test('a deployment that could exceed the server is refused with one line naming both sides and a fix', () => {
  const config = loadConfig({ ...urls, COFFER_PROCESS_COUNT: '6' });
  const sizing = connectionSizing(config, stockServer);
  assert.equal(sizing.ok, false);
  assert.equal(sizing.needed, 6 * 22 + 5);
  assert.doesNotMatch(sizing.message, /\n/);
  assert.match(sizing.message, /COFFER_PROCESS_COUNT=6 .* = 137 > max_connections 100 - superuser_reserved_connections 3 = 97/);
  const lowered = Number(/lower DATABASE_CONNECTION_BUDGET to (\d+)/.exec(sizing.message)![1]);
  const raised = Number(/raise max_connections to (\d+)/.exec(sizing.message)![1]);
  // The advice given is right at the edge: it fits, and one more connection would not.
  assert.equal(connectionSizing({ ...config, DATABASE_CONNECTION_BUDGET: lowered }, stockServer).ok, true);
  assert.equal(connectionSizing({ ...config, DATABASE_CONNECTION_BUDGET: lowered + 1 }, stockServer).ok, false);
  assert.equal(connectionSizing(config, { ...stockServer, maxConnections: raised }).ok, true);
  assert.equal(connectionSizing(config, { ...stockServer, maxConnections: raised - 1 }).ok, false);
  const error = new ConnectionSizingError(sizing.message);
  assert.equal(error.message, sizing.message, 'printed as is by the API and worker mains');
});

test('reserved_connections (PostgreSQL 16+) is kept out of what Coffer may use', () => {
  const config = loadConfig(urls);
  assert.equal(connectionSizing(config, { maxConnections: 52, superuserReserved: 3, reserved: 0 }).ok, true);
  const reserved = connectionSizing(config, { maxConnections: 52, superuserReserved: 3, reserved: 5 });
  assert.equal(reserved.ok, false);
  assert.match(reserved.message, /- reserved_connections 5 = 44/);
});

test('no budget can fit: the message only says to raise max_connections', () => {
  const sizing = connectionSizing(loadConfig({ ...urls, COFFER_PROCESS_COUNT: '40' }), stockServer);
  assert.equal(sizing.ok, false);
  assert.doesNotMatch(sizing.message, /lower DATABASE_CONNECTION_BUDGET/);
  assert.match(sizing.message, /raise max_connections to 888/);
});

test('the budget settings are checked against each other', () => {
  assert.throws(() => loadConfig({ ...urls, DATABASE_CONNECTION_BUDGET: '4', DATABASE_CONTROL_CONNECTIONS: '4' }), /DATABASE_CONTROL_CONNECTIONS/);
  assert.throws(() => loadConfig({ ...urls, DATABASE_CONNECTION_BUDGET: '8', DATABASE_ORG_CONNECTION_SHARE: '6' }), /DATABASE_ORG_CONNECTION_SHARE/);
  assert.equal(loadConfig({ ...urls, DATABASE_CONNECTION_BUDGET: '8', DATABASE_ORG_CONNECTION_SHARE: '5' }).DATABASE_ORG_CONNECTION_SHARE, 5);
});
