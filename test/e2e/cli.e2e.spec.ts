import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../support/cli';
import { TestWorld } from '../support/world';

type Entry = { action: string; outcome: string; actor: Record<string, string>; target: Record<string, string> | null; body: Record<string, unknown> };

describe('admin CLI (the compiled binary, PostgreSQL): same rules and audit entries as REST', () => {
  let world: TestWorld;

  before(async () => {
    world = await TestWorld.start();
  });

  after(() => world?.stop());

  const cli = async (...args: string[]) => {
    const { code, stdout, err } = await runCli(world, ...args);
    return { code, out: stdout ? safeJson(stdout) : undefined, err };
  };
  const controlLog = async (query: string) =>
    (await world.api.get(`admin/audit-logs${query}`)).body.entries as Entry[];

  test('orgs:create makes a working org and leaves the entry POST /organizations leaves', async () => {
    const rest = await world.createOrg('rest-made');
    const made = await cli('orgs:create', 'cli-made', 'Made by the CLI', 'Owner@Cli.example', 'Owner');
    assert.equal(made.code, 0, made.err);
    const organization = (made.out as { organization: { id: string; slug: string } }).organization;
    assert.equal(organization.slug, 'cli-made');
    const token = (made.out as { admin: { apiKey: { secret: string } } }).admin.apiKey.secret;
    const users = await world.api.org('cli-made').as(token).get('users');
    assert.equal(users.status, 200);
    assert.equal(users.body.users[0].email, 'owner@cli.example');

    const [cliEntry, restEntry] = await controlLog('?action=organization.created&limit=2');
    assert.deepEqual([cliEntry.target, cliEntry.outcome], [{ id: organization.id }, 'success']);
    assert.deepEqual([restEntry.target, restEntry.outcome], [{ id: rest.id }, 'success']);
    assert.equal(cliEntry.actor.kind, restEntry.actor.kind);
    assert.match(cliEntry.actor.id, /^cli:/);
  });

  test('bad input exits 1 with the API error body; a duplicate is refused and audited as a failure', async () => {
    const bad = await cli('orgs:create', 'Not A Slug', 'x');
    assert.equal(bad.code, 1);
    assert.equal(JSON.parse(bad.err).error.code, 'validation_failed');
    const again = await cli('orgs:create', 'cli-made', 'Again');
    assert.equal(again.code, 1);
    assert.equal(JSON.parse(again.err).error.code, 'organization_exists');
    const [failure] = await controlLog('?action=organization.created&outcome=failure&limit=1');
    assert.deepEqual(failure.body.error, { code: 'organization_exists', status: 409 });
    assert.equal((await cli('no-such-command')).code, 64);
  });

  test('audit:verify checks a chain like GET .../audit-logs/verify and is audited like it', async () => {
    const verified = await cli('audit:verify', 'cli-made');
    assert.equal(verified.code, 0, verified.err);
    assert.equal((verified.out as { valid: boolean }).valid, true);
    const control = await cli('audit:verify', '--control');
    assert.equal(control.code, 0, control.err);
    assert.equal((await cli('audit:verify', 'no-such-org')).code, 1);
    assert.equal((await cli('audit:verify')).code, 64);
    const signed = await cli('audit:checkpoint', 'cli-made');
    assert.equal(signed.code, 0, signed.err);
    assert.ok((signed.out as { signed: number }).signed > 0);
    assert.equal(((await cli('audit:verify', 'cli-made')).out as { valid: boolean }).valid, true);
  });

  test('keys:rotate rotates like POST .../keys/rotate and leaves the same entries', async () => {
    const org = await world.createOrg('cli-keys');
    const rest = await org.post('keys/rotate');
    assert.equal(rest.status, 200);
    const rotated = await cli('keys:rotate', 'cli-keys');
    assert.equal(rotated.code, 0, rotated.err);
    assert.deepEqual([(rotated.out as { previousVersion: number }).previousVersion, (rotated.out as { version: number }).version], [2, 3]);
    assert.equal((await cli('keys:rotate')).code, 64);
    const log = async (action: string) =>
      (await org.get(`audit-logs?action=${action}`)).body.entries as Entry[];
    const [cliRequest, restRequest] = await log('kms.key.rotation_requested');
    assert.deepEqual(cliRequest.target, restRequest.target);
    assert.match(cliRequest.actor.id, /^cli:/);
    const [cliRotated, restRotated] = await log('kms.key.rotated');
    assert.deepEqual([cliRotated.body.version, restRotated.body.version], [3, 2]);
    assert.deepEqual(cliRotated.target, restRotated.target);
  });

  test('status:encryption prints the encryption status like GET .../encryption-status and is audited like it', async () => {
    const org = await world.createOrg('cli-status');
    const rest = await org.get('encryption-status');
    assert.equal(rest.status, 200);
    const printed = await cli('status:encryption', 'cli-status');
    assert.equal(printed.code, 0, printed.err);
    const out = printed.out as { storage_encryption: string; db_encryption: string; key_rotation: unknown };
    assert.deepEqual([out.storage_encryption, out.db_encryption, out.key_rotation], [rest.body.storage_encryption, rest.body.db_encryption, rest.body.key_rotation]);
    const entries = (await org.get('audit-logs?action=encryption_status.read')).body.entries as Entry[];
    assert.equal(entries.length, 2);
    assert.deepEqual(entries[0].target, entries[1].target);
    assert.match(entries[0].actor.id, /^cli:/);
  });

  test('health reports PostgreSQL and the KMS', async () => {
    const health = await cli('health');
    assert.equal(health.code, 0, health.err);
    assert.deepEqual((health.out as { postgres: string; kms: { reachable: boolean } }).postgres, 'ok');
    assert.equal((health.out as { kms: { reachable: boolean } }).kms.reachable, true);
  });
});

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
