import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../support/cli';
import type { OrgClient, TestUser } from '../support/client';
import { TestWorld } from '../support/world';

type Entry = { seq: number; action: string; outcome: string; actor: Record<string, string>; target: Record<string, unknown> | null; body: Record<string, unknown> };

/**
 * The operator's commands of the admin CLI (the compiled binary, PostgreSQL, Redis, an
 * in-process worker): each answers what its REST twin answers and leaves the entry it leaves,
 * with the operator as the actor.
 */
describe('admin CLI operator commands (the compiled binary, PostgreSQL, Redis, worker): orgs, users, keys, rewrap, audit export', () => {
  let world: TestWorld;
  let org: OrgClient;
  let dir: string;

  before(async () => {
    world = await TestWorld.start({ orgs: ['acme'], worker: true });
    org = world.org('acme');
    dir = mkdtempSync(join(tmpdir(), 'coffer-cli-operator-'));
  });

  after(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    await world?.stop();
  });

  const cli = async (...args: string[]) => {
    const { code, stdout, err } = await runCli(world, ...args);
    return { code, out: safeJson(stdout) as any, stdout, err };
  };
  const orgLog = async (client: OrgClient, action: string) => (await client.get(`audit-logs?action=${action}&limit=1000`)).body.entries as Entry[];
  const controlLog = async (query = '') => (await world.api.get(`admin/audit-logs?limit=1000${query}`)).body.entries as Entry[];
  const until = async <T>(what: string, probe: () => Promise<T | undefined>): Promise<T> => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };

  test('--help lists the new commands with their usage; bad command lines exit 64; there is no command that issues a key', async () => {
    const help = await cli('--help');
    assert.equal(help.code, 0, help.err);
    for (const name of ['orgs:list', 'users:list', 'users:disable', 'users:enable', 'keys:list', 'keys:revoke', 'rewrap:status', 'audit:export']) {
      assert.match(help.stdout, new RegExp(`\\n  ${name} +\\S`), `${name} in --help`);
    }
    const usages: [string, RegExp][] = [
      ['users:disable', /^usage: coffer users:disable <org-slug> <user-id>/],
      ['keys:list', /^usage: coffer keys:list <org-slug> \[--user <user-id>\][\s\S]*--user <value>/],
      ['rewrap:status', /^usage: coffer rewrap:status <org-slug> \[--wait\][\s\S]*--wait[\s\S]*--stall-after <value>/],
      ['audit:export', /^usage: coffer audit:export <org-slug> \| --control \[--since <seq>\] \[--output <file>\][\s\S]*--output <value>/],
    ];
    for (const [name, usage] of usages) {
      const one = await cli(name, '--help');
      assert.equal(one.code, 0, one.err);
      assert.match(one.stdout, usage);
    }
    for (const args of [
      ['users:disable', 'acme'],
      ['users:list'],
      ['keys:revoke', 'acme'],
      ['keys:list', 'acme', '--user'],
      ['orgs:list', 'acme'],
      ['rewrap:status', 'acme', '--force'],
      ['rewrap:status', 'acme', '--wait', '--stall-after', 'soon'],
      ['audit:export'],
      ['audit:export', 'acme', '--control'],
      ['audit:export', 'acme', '--since', '0'],
      ['audit:export', 'acme', '--output', join(dir, 'no-such-dir', 'x.ndjson')],
      ['keys:issue', 'acme', 'someone'],
    ]) {
      const refused = await cli(...args);
      assert.equal(refused.code, 64, `${args.join(' ')}: ${refused.err}`);
    }
  });

  test('orgs:list answers what GET /organizations answers', async () => {
    const rest = await world.api.get('organizations');
    assert.equal(rest.status, 200);
    const listed = await cli('orgs:list', '--as', 'reader');
    assert.equal(listed.code, 0, listed.err);
    assert.deepEqual(listed.out, rest.body);
    assert.ok(listed.out.organizations.some((o: { slug: string; status: string }) => o.slug === 'acme' && o.status === 'active'));
  });

  test('users:list answers what GET .../users answers and leaves the same users.listed entry', async () => {
    await world.addUser(org, 'member');
    const rest = await org.get('users');
    assert.equal(rest.status, 200);
    const listed = await cli('users:list', 'acme', '--as', 'alice');
    assert.equal(listed.code, 0, listed.err);
    assert.deepEqual(listed.out, rest.body);
    const [cliEntry, restEntry] = await orgLog(org, 'users.listed');
    assert.deepEqual(cliEntry.target, restEntry.target);
    assert.deepEqual(cliEntry.target, { org: 'acme', orgId: org.id });
    assert.match(cliEntry.actor.id, /^cli:alice@/);
    assert.equal(restEntry.actor.kind, 'user');
    assert.equal((await cli('users:list', 'no-such-org')).code, 1);
  });

  test('users:disable and users:enable act as POST .../disable and .../enable, with the same entries; the key stops and works again', async () => {
    const [viaRest, viaCli]: TestUser[] = [await world.addUser(org, 'member'), await world.addUser(org, 'member')];
    const rest = await org.post(`users/${viaRest.userId}/disable`);
    assert.equal(rest.status, 200);
    const disabled = await cli('users:disable', 'acme', viaCli.userId);
    assert.equal(disabled.code, 0, disabled.err);
    assert.equal(disabled.out.user.id, viaCli.userId);
    assert.equal(disabled.out.user.disabled, true);
    assert.deepEqual(Object.keys(disabled.out.user).sort(), Object.keys(rest.body.user).sort());
    assert.deepEqual(disabled.out, (await org.get(`users/${viaCli.userId}`)).body);
    // The key was never used: no API cache holds it, so the refusal is immediate.
    assert.equal((await org.as(viaCli.token).get('api-keys')).status, 401);

    const [cliEntry, restEntry] = await orgLog(org, 'user.disabled');
    assert.deepEqual(restEntry.target, { org: 'acme', userId: viaRest.userId, orgId: org.id, id: viaRest.userId });
    assert.deepEqual(cliEntry.target, { org: 'acme', userId: viaCli.userId, orgId: org.id, id: viaCli.userId });
    assert.deepEqual([cliEntry.outcome, restEntry.outcome], ['success', 'success']);
    assert.match(cliEntry.actor.id, /^cli:/);

    const restEnabled = await org.post(`users/${viaRest.userId}/enable`);
    assert.equal(restEnabled.status, 200);
    const enabled = await cli('users:enable', 'acme', viaCli.userId);
    assert.equal(enabled.code, 0, enabled.err);
    assert.equal(enabled.out.user.disabled, false);
    assert.deepEqual(enabled.out, (await org.get(`users/${viaCli.userId}`)).body);
    // The API may have cached the refused credentials (API_KEY_CACHE_TTL_MS): they age out.
    await until('the re-enabled key to work', async () => ((await org.as(viaCli.token).get('api-keys')).status === 200 ? true : undefined));
    const [cliEnabled, restEnabledEntry] = await orgLog(org, 'user.enabled');
    assert.deepEqual(cliEnabled.target, { org: 'acme', userId: viaCli.userId, orgId: org.id, id: viaCli.userId });
    assert.deepEqual(restEnabledEntry.target, { org: 'acme', userId: viaRest.userId, orgId: org.id, id: viaRest.userId });
    assert.match(cliEnabled.actor.id, /^cli:/);

    const missing = await cli('users:enable', 'acme', 'no-such-user');
    assert.equal(missing.code, 1);
    assert.equal(JSON.parse(missing.err).error.code, 'user_not_found');
  });

  test("users:disable refuses the org's last admin (409 last_admin, exit 1), audited as the REST refusal is", async () => {
    const solo = await world.createOrg('solo');
    const rest = await world.api.post(`organizations/solo/users/${solo.adminUserId}/disable`);
    assert.equal(rest.status, 409);
    assert.equal(rest.body.error.code, 'last_admin');
    const refused = await cli('users:disable', 'solo', solo.adminUserId);
    assert.equal(refused.code, 1);
    assert.equal(JSON.parse(refused.err).error.code, 'last_admin');
    assert.equal(refused.stdout, '');
    assert.equal((await solo.get('users')).body.users[0].disabled, false);
    const [cliEntry, restEntry] = await orgLog(solo, 'user.disabled');
    assert.deepEqual(cliEntry.body.error, { code: 'last_admin', status: 409 });
    assert.deepEqual(restEntry.body.error, { code: 'last_admin', status: 409 });
    assert.deepEqual([cliEntry.outcome, restEntry.outcome], ['failure', 'failure']);
    assert.deepEqual(cliEntry.target, restEntry.target);
    assert.deepEqual(cliEntry.target, { org: 'solo', userId: solo.adminUserId, orgId: solo.id });
    assert.match(cliEntry.actor.id, /^cli:/);
  });

  test('keys:list answers what GET .../api-keys answers and never prints a secret; --user narrows it', async () => {
    const user = await world.addUser(org, 'security_officer');
    const rest = await org.get('api-keys');
    assert.equal(rest.status, 200);
    const listed = await cli('keys:list', 'acme', '--as', 'reader');
    assert.equal(listed.code, 0, listed.err);
    assert.deepEqual(listed.out, rest.body);
    assert.ok(listed.out.apiKeys.length >= 4);
    for (const token of [org.adminToken, user.token]) {
      assert.ok(!listed.stdout.includes(token), 'no secret in the output');
      assert.ok(!listed.stdout.includes(token.split('.').pop()!), 'no part of a secret in the output');
    }
    assert.doesNotMatch(listed.stdout, /secret/i);
    const own = await cli('keys:list', 'acme', '--user', user.userId, '--as', 'reader');
    assert.equal(own.code, 0, own.err);
    assert.deepEqual(own.out.apiKeys.map((k: { id: string }) => k.id), [user.keyId]);
    const nobody = await cli('keys:list', 'acme', '--user', 'no-such-user');
    assert.equal(nobody.code, 1);
    assert.equal(JSON.parse(nobody.err).error.code, 'user_not_found');
  });

  test('keys:revoke revokes like DELETE .../api-keys/:id, with the same entry; the key stops working', async () => {
    const [viaRest, viaCli] = [await world.addUser(org, 'member'), await world.addUser(org, 'member')];
    const rest = await org.delete(`api-keys/${viaRest.keyId}`);
    assert.equal(rest.status, 200);
    const revoked = await cli('keys:revoke', 'acme', viaCli.keyId);
    assert.equal(revoked.code, 0, revoked.err);
    assert.equal(revoked.out.apiKey.id, viaCli.keyId);
    assert.equal(revoked.out.apiKey.status, 'revoked');
    assert.deepEqual(Object.keys(revoked.out.apiKey).sort(), Object.keys(rest.body.apiKey).sort());
    assert.doesNotMatch(revoked.stdout, /secret/i);
    assert.equal((await org.as(viaCli.token).get('api-keys')).status, 401);
    const [cliEntry, restEntry] = await orgLog(org, 'api_key.revoked');
    assert.deepEqual(restEntry.target, { org: 'acme', keyId: viaRest.keyId, orgId: org.id, id: viaRest.keyId });
    assert.deepEqual(cliEntry.target, { org: 'acme', keyId: viaCli.keyId, orgId: org.id, id: viaCli.keyId });
    assert.match(cliEntry.actor.id, /^cli:/);
    const again = await cli('keys:revoke', 'acme', 'no-such-key');
    assert.equal(again.code, 1);
    assert.equal(JSON.parse(again.err).error.code, 'api_key_not_found');
  });

  test('rewrap:status answers GET .../keys; --wait gives up (exit 2) while no worker runs, and finishes (exit 0) once the worker has rewrapped', async () => {
    const rest = await org.get('keys');
    assert.equal(rest.status, 200);
    const shown = await cli('rewrap:status', 'acme', '--as', 'reader');
    assert.equal(shown.code, 0, shown.err);
    assert.deepEqual(shown.out, rest.body);
    assert.equal(shown.out.rewrap.remaining, 0);
    const stored = shown.out.versions.reduce((sum: number, v: { wrappedDataKeys: number }) => sum + v.wrappedDataKeys, 0);
    assert.ok(stored > 0, 'the org stores data keys to rewrap');

    await world.stopWorker();
    const rotated = await cli('keys:rotate', 'acme');
    assert.equal(rotated.code, 0, rotated.err);
    const version = rotated.out.version as number;
    const stalled = await cli('rewrap:status', 'acme', '--wait', '--stall-after', '2', '--as', 'reader');
    assert.equal(stalled.code, 2, stalled.err);
    assert.equal(stalled.out.latestVersion, version);
    assert.equal(stalled.out.rewrap.remaining, stored);
    assert.match(stalled.err, /no progress for \d+s/);
    assert.match(stalled.err, new RegExp(`rewrap: 0/${stored} data keys rewrapped to v${version}, ${stored} remaining\\n`));

    // The CLI waits first; the worker starts while it does.
    const waiting = runCli(world, 'rewrap:status', 'acme', '--wait', '--as', 'reader');
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await world.startWorker();
    const done = await waiting;
    assert.equal(done.code, 0, done.err);
    const final = JSON.parse(done.stdout);
    assert.equal(final.rewrap.remaining, 0);
    assert.equal(final.latestVersion, version);
    assert.equal(final.versions.find((v: { version: number }) => v.version === version).wrappedDataKeys, stored);
    const lines = done.err.split('\n').filter((l) => l.startsWith('rewrap:'));
    assert.equal(lines[0], `rewrap: 0/${stored} data keys rewrapped to v${version}, ${stored} remaining`, done.err);
    assert.equal(lines[lines.length - 1], `rewrap: ${stored}/${stored} data keys rewrapped to v${version}, 0 remaining`, 'not a TTY: one line per change, no bar');
    assert.deepEqual((await org.get('keys')).body.rewrap.remaining, 0);
  });

  test('reads that REST does not audit (orgs:list, keys:list, rewrap:status) leave no entry either', async () => {
    const byReader = (entries: Entry[]) => entries.filter((e) => e.actor.operator === 'reader');
    assert.deepEqual(byReader(await controlLog()), []);
    assert.deepEqual(byReader((await org.get('audit-logs?limit=1000')).body.entries), []);
  });

  test('audit:export writes the entries of the REST NDJSON export (mode 0600), audited as audit_log.read; audit:verify-offline accepts it, and refuses it with one byte changed', async () => {
    const signed = await cli('audit:checkpoint', 'acme');
    assert.equal(signed.code, 0, signed.err);
    const file = join(dir, 'acme.ndjson');
    const exported = await cli('audit:export', 'acme', '--output', file, '--as', 'auditor');
    assert.equal(exported.code, 0, exported.err);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const summary = exported.out as { chain: string; entries: number; firstSeq: number; lastSeq: number; checkpoint: number; publicKeys: number; output: string };
    assert.deepEqual([summary.chain, summary.firstSeq, summary.output], [org.id, 1, file]);
    // The worker signs every minute too: the newest checkpoint, at least the one just signed.
    assert.ok(summary.checkpoint >= signed.out.signed && summary.checkpoint <= summary.lastSeq, JSON.stringify(summary));
    assert.equal(summary.entries, summary.lastSeq);
    assert.ok(summary.publicKeys >= 1);

    const text = readFileSync(file, 'utf8');
    const lines = text.trimEnd().split('\n');
    assert.equal(lines.length, summary.entries + 2, 'the entries, then the checkpoint and the keys');
    assert.equal(JSON.parse(lines[lines.length - 2]).format, 'coffer-audit-anchor/1');
    assert.equal(JSON.parse(lines[lines.length - 1]).format, 'coffer-audit-keys/1');
    const rest = await org.get('audit-logs').set('Accept', 'application/x-ndjson');
    assert.equal(rest.status, 200);
    const restLines = rest.text.trimEnd().split('\n').filter((l) => JSON.parse(l).seq <= summary.lastSeq);
    assert.deepEqual(lines.slice(0, -2), restLines, 'the same entries, byte for byte, in the same order');

    const [restRead, cliRead] = await orgLog(org, 'audit_log.read');
    assert.deepEqual(cliRead.target, restRead.target);
    assert.deepEqual(cliRead.target, { org: 'acme', orgId: org.id });
    assert.match(cliRead.actor.id, /^cli:auditor@/);
    assert.ok(cliRead.seq > summary.lastSeq, 'recorded once the export was written');

    const verified = await cli('audit:verify-offline', file);
    assert.equal(verified.code, 0, `${verified.err} ${verified.stdout}`);
    assert.deepEqual([verified.out.valid, verified.out.chain, verified.out.keysFrom, verified.out.checkedThrough, verified.out.signedThrough], [true, org.id, 'export', summary.lastSeq, summary.checkpoint]);
    const keysFile = join(dir, 'keys.json');
    const keys = await world.http().get(`/api/v1/audit/keys?chain=${org.id}`);
    writeFileSync(keysFile, JSON.stringify(keys.body));
    const pinned = await cli('audit:verify-offline', file, '--keys', keysFile);
    assert.equal(pinned.code, 0, pinned.err);
    assert.equal(pinned.out.keysFrom, 'pinned');

    // One byte changed in an entry's action.
    const bytes = readFileSync(file);
    const at = bytes.indexOf('"action":"', Math.floor(bytes.length / 3)) + '"action":"'.length;
    bytes[at] = bytes[at] === 0x78 ? 0x79 : 0x78;
    const tampered = join(dir, 'tampered.ndjson');
    writeFileSync(tampered, bytes);
    const broken = await cli('audit:verify-offline', tampered);
    assert.equal(broken.code, 2, broken.err);
    assert.equal(broken.out.valid, false);
    assert.match(broken.out.reason, /altered/);
  });

  test('audit:export --control streams to stdout (the summary on stderr) and verifies; --since exports the tail, which alone does not', async () => {
    assert.equal((await cli('audit:checkpoint', '--control')).code, 0);
    const exported = await cli('audit:export', '--control');
    assert.equal(exported.code, 0, exported.err);
    const summary = JSON.parse(exported.err.split('\n').findLast((l) => l.startsWith('{"chain"'))!);
    assert.equal(summary.chain, 'control');
    assert.equal(summary.output, 'stdout');
    assert.equal(exported.stdout.trimEnd().split('\n').length, summary.entries + 2);
    const file = join(dir, 'control.ndjson');
    writeFileSync(file, exported.stdout);
    const verified = await cli('audit:verify-offline', file);
    assert.equal(verified.code, 0, `${verified.err} ${verified.stdout}`);
    assert.equal(verified.out.chain, 'control');
    const rest = await world.api.get('admin/audit-logs').set('Accept', 'application/x-ndjson');
    assert.equal(rest.status, 200);
    assert.deepEqual(
      exported.stdout.trimEnd().split('\n').slice(0, -2),
      rest.text.trimEnd().split('\n').filter((l) => JSON.parse(l).seq <= summary.lastSeq),
      'the entries of GET /admin/audit-logs as NDJSON',
    );
    const [restRead, cliRead] = await controlLog('&action=audit_log.read');
    assert.equal(restRead.actor.kind, 'platform_admin');
    assert.deepEqual([cliRead.target, restRead.target], [null, null], 'as GET /admin/audit-logs: no target');
    assert.match(cliRead.actor.id, /^cli:/);

    const tail = join(dir, 'tail.ndjson');
    const since = await cli('audit:export', 'acme', '--since', '5', '--output', tail);
    assert.equal(since.code, 0, since.err);
    assert.equal(since.out.firstSeq, 5);
    assert.match(since.out.note, /starts at entry 5/);
    const seqs = readFileSync(tail, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l).seq).filter((s) => s !== undefined);
    assert.equal(Math.min(...seqs), 5);
    assert.equal((await cli('audit:verify-offline', tail)).code, 2, 'entries 1-4 are missing');
  });
});

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
