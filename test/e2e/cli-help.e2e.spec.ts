import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../support/api-process';
import { runCli } from '../support/cli';
import type { OrgClient } from '../support/client';
import { TestWorld } from '../support/world';

type Entry = { action: string; actor: Record<string, string> };

describe('admin CLI (the compiled binary, PostgreSQL): --help never acts, bad command lines are refused, the operator is named', () => {
  let world: TestWorld;
  let org: OrgClient;

  before(async () => {
    world = await TestWorld.start({ orgs: ['acme'] });
    org = world.org('acme');
  });

  after(() => world?.stop());

  const cli = async (...args: string[]) => {
    const { code, stdout, err } = await runCli(world, ...args);
    return { code, out: stdout, err };
  };
  const orgLog = async (action: string) => (await org.get(`audit-logs?action=${action}`)).body.entries as Entry[];
  const controlLog = async (action: string) => (await world.api.get(`admin/audit-logs?action=${action}`)).body.entries as Entry[];
  const keyVersion = async () => (await org.get('keys')).body.latestVersion as number;

  test('keys:rotate <org> --help prints the command\'s help, exits 0 and rotates nothing', async () => {
    const before = await keyVersion();
    assert.equal(typeof before, 'number');
    const help = await cli('keys:rotate', org.slug, '--help');
    assert.equal(help.code, 0, help.err);
    assert.match(help.out, /^usage: coffer keys:rotate <org-slug>/);
    assert.equal(await keyVersion(), before);
    assert.deepEqual(await orgLog('kms.key.rotation_requested'), []);
  });

  test('certs:renew --help prints help and requests no renewal of a certificate named --help', async () => {
    const help = await cli('certs:renew', '--help');
    assert.equal(help.code, 0, help.err);
    assert.match(help.out, /^usage: coffer certs:renew <certificate-id>/);
    assert.deepEqual(await controlLog('certificate.renewal_requested'), []);
  });

  test('no command or help lists every command; version prints the package version', async () => {
    for (const args of [[], ['help'], ['--help']]) {
      const help = await cli(...args);
      assert.equal(help.code, 0, help.err);
      for (const name of ['orgs:create', 'audit:verify', 'keys:rotate', 'certs:renew', 'status:encryption', 'health']) assert.match(help.out, new RegExp(`\\b${name}\\b`));
    }
    const version = await cli('version');
    assert.equal(version.code, 0);
    assert.equal(version.out.trim(), JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).version);
  });

  test('an unknown command or option says so (exit 64); orgs:create with an e-mail but no display name creates nothing', async () => {
    const unknown = await cli('orgs:delete-everything');
    assert.equal(unknown.code, 64);
    assert.match(unknown.err, /unknown command 'orgs:delete-everything'/);
    const option = await cli('keys:rotate', org.slug, '--force');
    assert.equal(option.code, 64);
    assert.match(option.err, /unknown option '--force'/);
    const half = await cli('orgs:create', 'half-made', 'Half', 'root@half.example');
    assert.equal(half.code, 64);
    assert.match(half.err, /display name/);
    const orgs = await world.api.get('organizations');
    assert.ok(!orgs.body.organizations.some((o: { slug: string }) => o.slug === 'half-made'));
  });

  test('--as names the operator in the audit entry; without it, the invoking user', async () => {
    const named = await cli('status:encryption', org.slug, '--as', 'alice');
    assert.equal(named.code, 0, named.err);
    const plain = await cli('status:encryption', org.slug);
    assert.equal(plain.code, 0, plain.err);
    const [latest, first] = await orgLog('encryption_status.read');
    assert.equal(first.actor.operator, 'alice');
    assert.match(first.actor.id, /^cli:alice@/);
    assert.equal(latest.actor.operator, process.env.COFFER_OPERATOR || (await import('node:os')).userInfo().username);
  });
});
