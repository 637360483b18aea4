import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, createHmac, pbkdf2Sync, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomId } from '@coffer/crypto';
import { withClient, withDatabase } from '@coffer/database';
import { VaultKmsProvider } from '@coffer/kms';
import { cofferTransitPolicy, initDatabaseRoles, initOpenBao } from '../../apps/cli/src/compose-init';
import { REPO_ROOT } from '../support/api-process';
import { dropDatabasesAndRoles, PG_ADMIN_URL } from '../support/test-env';
import { OpenBaoDouble } from '../support/openbao-double';

/**
 * Whether a stored `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` verifier is the
 * given password's (RFC 5802). The test server trusts local connections, so logging in would
 * not prove the password; the verifier does.
 */
function scramMatches(verifier: string, password: string): boolean {
  const [, iterations, salt, storedKey] = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):/.exec(verifier) ?? [];
  if (!iterations) return false;
  const salted = pbkdf2Sync(password, Buffer.from(salt, 'base64'), Number(iterations), 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  return createHash('sha256').update(clientKey).digest('base64') === storedKey;
}

describe('coffer init: database roles (PostgreSQL)', () => {
  const id = randomId(4);
  const names = { owner: `coffer_init_owner_${id}`, app: `coffer_init_app_${id}` };
  const urlOf = (role: string, password: string) => {
    const url = new URL(withDatabase(PG_ADMIN_URL, 'postgres'));
    url.username = role;
    url.password = password;
    return url.toString();
  };
  const roles = () =>
    withClient(PG_ADMIN_URL, async (admin) => {
      const { rows } = await admin.query(
        'SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolpassword FROM pg_authid WHERE rolname = ANY($1) ORDER BY rolname DESC',
        [[names.owner, names.app]],
      );
      return rows as { rolname: string; rolsuper: boolean; rolcreatedb: boolean; rolcreaterole: boolean; rolpassword: string }[];
    });
  after(() => dropDatabasesAndRoles(`coffer_init_${id}`, [names.owner, names.app]));

  test('creates the owner and the app role with the passwords of their URLs; the app role gets no privilege', async () => {
    const urls = { DATABASE_OWNER_URL: urlOf(names.owner, 'owner-pw-1'), DATABASE_APP_URL: urlOf(names.app, 'app-pw-1') };
    assert.deepEqual(await initDatabaseRoles(PG_ADMIN_URL, urls), names);
    const [owner, app] = await roles();
    assert.deepEqual(
      [owner, app].map(({ rolpassword, ...flags }) => flags),
      [
        { rolname: names.owner, rolsuper: false, rolcreatedb: true, rolcreaterole: false },
        { rolname: names.app, rolsuper: false, rolcreatedb: false, rolcreaterole: false },
      ],
    );
    assert.equal(scramMatches(owner.rolpassword, 'owner-pw-1'), true);
    assert.equal(scramMatches(app.rolpassword, 'app-pw-1'), true);
    assert.equal(scramMatches(app.rolpassword, 'owner-pw-1'), false);
  });

  test('run again with new passwords (a rerun, a rotation), it sets them; URL-encoded passwords are decoded', async () => {
    const urls = { DATABASE_OWNER_URL: urlOf(names.owner, 'owner-pw-2'), DATABASE_APP_URL: urlOf(names.app, 'app-pw-%2F2') };
    await initDatabaseRoles(PG_ADMIN_URL, urls);
    const [owner, app] = await roles();
    assert.equal(scramMatches(owner.rolpassword, 'owner-pw-2'), true);
    assert.equal(scramMatches(app.rolpassword, 'app-pw-/2'), true);
    assert.equal(scramMatches(app.rolpassword, 'app-pw-1'), false);
  });

  test('refuses one role for both, the superuser itself, or a URL without a password', async () => {
    const superuser = new URL(PG_ADMIN_URL).username;
    const cases = [
      [{ DATABASE_OWNER_URL: urlOf(names.owner, 'a'), DATABASE_APP_URL: urlOf(names.owner, 'a') }, /two different roles/],
      [{ DATABASE_OWNER_URL: urlOf(names.owner, 'a'), DATABASE_APP_URL: urlOf(superuser, 'a') }, /must not be the superuser/],
      [{ DATABASE_OWNER_URL: urlOf(names.owner, 'a'), DATABASE_APP_URL: urlOf(names.app, '') }, /must carry passwords/],
    ] as const;
    for (const [urls, message] of cases) await assert.rejects(initDatabaseRoles(PG_ADMIN_URL, urls), message);
  });
});

/** Vault's policy path match: `+` is one segment; Coffer's policy uses no `*` glob. */
function policyAllows(policy: string, method: string, path: string): boolean {
  const needs = method === 'GET' ? ['read'] : ['create', 'update'];
  return [...policy.matchAll(/path "([^"]+)" \{\s*capabilities = \[([^\]]*)\]/g)].some(([, pattern, caps]) => {
    const want = pattern.split('/');
    const got = path.split('/');
    return want.length === got.length && want.every((seg, i) => seg === '+' || seg === got[i]) && needs.some((c) => caps.includes(`"${c}"`));
  });
}

describe("coffer init: OpenBao policy covers Coffer's transit calls and nothing more (Vault transit double)", () => {
  const vault = new OpenBaoDouble({ mount: 'coffer-transit' });
  const policy = cofferTransitPolicy('coffer-transit');
  before(() => vault.start());
  after(() => vault.stop());

  test('every request the Vault KMS provider makes is allowed by the policy', async () => {
    const kms = new VaultKmsProvider({ address: vault.address, token: vault.token, mount: 'coffer-transit', keyPrefix: '', timeoutMs: 5000 });
    await kms.ensureKey('coffer-org-1');
    const dataKey = await kms.generateDataKey('coffer-org-1');
    await kms.unwrap('coffer-org-1', dataKey.wrapped);
    await kms.wrap('coffer-org-1', Buffer.alloc(32, 7));
    await kms.keyInfo('coffer-org-1');
    await kms.rotate('coffer-org-1');
    await kms.rewrap('coffer-org-1', dataKey.wrapped);
    await kms.setMinDecryptionVersion('coffer-org-1', 1);
    await kms.ensureKey('coffer-audit-1', 'ed25519');
    const signature = await kms.sign('coffer-audit-1', Buffer.from('head'));
    assert.equal(await kms.verify('coffer-audit-1', Buffer.from('head'), signature), true);
    const transit = vault.requests.filter((r) => r.includes('/coffer-transit/')).map((r) => r.replace(' /v1/', ' '));
    assert.ok(transit.length >= 10);
    for (const request of transit) {
      const [method, path] = request.split(' ');
      assert.ok(policyAllows(policy, method, path), `${request} is allowed`);
    }
  });

  test('destructive and exporting paths are not granted, nor another mount', () => {
    for (const path of ['keys/k/trim', 'export/encryption-key/k', 'backup/k', 'restore/k', 'keys', 'hmac/k']) {
      assert.equal(policyAllows(policy, 'POST', `coffer-transit/${path}`), false, path);
    }
    assert.equal(policyAllows(policy, 'POST', 'transit/decrypt/k'), false);
    assert.doesNotMatch(policy, /\*|"delete"|"sudo"|"list"/);
    assert.match(policy, /path "coffer-transit\/keys\/\+\/config" \{[^}]*allowed_parameters = \{ "min_decryption_version" = \[\] \}/);
  });
});

describe('coffer init: OpenBao setup (OpenBao sys API double)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-init-'));
  const ids = { roleId: randomUUID(), secretId: randomBytes(32).toString('hex') };
  const doubles: OpenBaoDouble[] = [];
  const lines: string[] = [];
  const fresh = async () => {
    const bao = new OpenBaoDouble({ uninitialized: true });
    await bao.start();
    doubles.push(bao);
    return bao;
  };
  const init = (bao: OpenBaoDouble, keysFile: string) =>
    initOpenBao({ address: bao.address, mount: 'transit', keysFile, ...ids, log: (line) => lines.push(line) });
  after(async () => {
    await Promise.all(doubles.map((d) => d.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  test('a new server is initialized, unsealed, given transit, the policy and the AppRole of .env; the keys file is 0600', async () => {
    const bao = await fresh();
    const keysFile = join(dir, 'first', 'openbao-keys.json');
    await init(bao, keysFile);
    assert.equal(bao.initialized && !bao.sealed, true);
    assert.deepEqual(JSON.parse(readFileSync(keysFile, 'utf8')), { unsealKeys: [bao.unsealKey], rootToken: bao.token });
    assert.equal(statSync(keysFile).mode & 0o777, 0o600);
    assert.equal(bao.mounts.get('transit/'), 'transit');
    assert.equal(bao.policies.get('coffer'), cofferTransitPolicy('transit'));
    assert.equal(bao.auths.get('approle/'), 'approle');
    const role = bao.roles.get('coffer')!;
    assert.deepEqual(role.config.token_policies, ['coffer']);
    assert.equal(role.roleId, ids.roleId);
    assert.deepEqual(role.secretIds, [ids.secretId]);
    const printed = lines.join('\n');
    for (const secret of [bao.unsealKey, bao.token, ids.secretId]) assert.equal(printed.includes(secret), false, 'no secret is printed');
  });

  test("once set up, the server serves Coffer's Vault KMS provider, logged in with the AppRole of .env", async () => {
    const bao = await fresh();
    await init(bao, join(dir, 'served', 'openbao-keys.json'));
    const kms = new VaultKmsProvider({ address: bao.address, appRole: ids, mount: 'transit', keyPrefix: '', timeoutMs: 5000 });
    await kms.ensureKey('coffer-org-1');
    const dataKey = await kms.generateDataKey('coffer-org-1');
    assert.deepEqual(await kms.unwrap('coffer-org-1', dataKey.wrapped), dataKey.plaintext);
    assert.ok(bao.requests.includes('POST /v1/auth/approle/login'));
    assert.ok(bao.requests.includes('POST /v1/transit/datakey/plaintext/coffer-org-1'));
  });

  test('run again after a restart, it unseals with the kept key and registers nothing twice', async () => {
    const bao = await fresh();
    const keysFile = join(dir, 'rerun', 'openbao-keys.json');
    await init(bao, keysFile);
    await bao.restart();
    assert.equal(bao.sealed, true);
    await init(bao, keysFile);
    assert.equal(bao.sealed, false);
    assert.deepEqual(bao.roles.get('coffer')!.secretIds, [ids.secretId]);
    assert.equal(bao.requests.filter((r) => r === 'PUT /v1/sys/init').length, 1);
    assert.equal(bao.requests.filter((r) => r.startsWith('POST /v1/sys/mounts/')).length, 1);
  });

  test('an initialized server without its keys file stops init with a message naming the file', async () => {
    const bao = await fresh();
    await init(bao, join(dir, 'lost', 'openbao-keys.json'));
    await bao.restart();
    const missing = join(dir, 'elsewhere', 'openbao-keys.json');
    await assert.rejects(init(bao, missing), new RegExp(`${missing} is missing or unreadable: restore it from the backup`));
    assert.equal(bao.sealed, true);
  });

  test('with the keys file moved off the host and OpenBao unsealed by hand, init leaves OpenBao alone and succeeds', async () => {
    const bao = await fresh();
    const keysFile = join(dir, 'hardened', 'openbao-keys.json');
    await init(bao, keysFile);
    rmSync(keysFile);
    const before = bao.requests.length;
    await init(bao, keysFile);
    assert.equal(bao.sealed, false);
    assert.ok(!bao.requests.slice(before).some((r) => r.startsWith('PUT ') || r.startsWith('POST ')), 'nothing written');
  });

  test('a keys file holding keys next to a server that is not initialized is never overwritten', async () => {
    const bao = await fresh();
    const keysFile = join(dir, 'kept', 'openbao-keys.json');
    mkdirSync(dirname(keysFile), { recursive: true });
    writeFileSync(keysFile, '{"unsealKeys":["old"],"rootToken":"old"}');
    await assert.rejects(init(bao, keysFile), /holds keys but OpenBao is not initialized/);
    assert.equal(readFileSync(keysFile, 'utf8'), '{"unsealKeys":["old"],"rootToken":"old"}');
    assert.equal(bao.initialized, false);
  });
});

describe('coffer init as the image runs it (entry point, PostgreSQL, OpenBao sys API double)', () => {
  const id = randomId(4);
  const dir = mkdtempSync(join(tmpdir(), 'coffer-init-main-'));
  const bao = new OpenBaoDouble({ uninitialized: true });
  before(() => bao.start());
  after(async () => {
    await bao.stop();
    await dropDatabasesAndRoles(`coffer_initmain_${id}`, [`coffer_initmain_owner_${id}`, `coffer_initmain_app_${id}`]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('reads its environment, creates the roles, sets OpenBao up, exits 0 and prints no secret', async () => {
    const roleUrl = (role: string, password: string) => {
      const url = new URL(withDatabase(PG_ADMIN_URL, `coffer_initmain_${id}`));
      url.username = role;
      url.password = password;
      return url.toString();
    };
    const secretId = randomBytes(32).toString('hex');
    const env = {
      PATH: process.env.PATH!,
      COFFER_APP_DIR: REPO_ROOT,
      COFFER_INIT_POSTGRES_URL: PG_ADMIN_URL,
      COFFER_INIT_OPENBAO_KEYS_FILE: join(dir, 'openbao-keys.json'),
      DATABASE_OWNER_URL: roleUrl(`coffer_initmain_owner_${id}`, 'owner-secret-pw'),
      DATABASE_APP_URL: roleUrl(`coffer_initmain_app_${id}`, 'app-secret-pw'),
      KMS_PROVIDER: 'vault',
      KMS_VAULT_ADDR: bao.address,
      KMS_VAULT_ROLE_ID: randomUUID(),
      KMS_VAULT_SECRET_ID: secretId,
    };
    // Not spawnSync: the double answers from this process's event loop.
    const child = spawn('sh', [join(REPO_ROOT, 'deploy/docker/coffer'), 'init'], { env });
    const result = { stdout: '', stderr: '', status: null as number | null };
    child.stdout.on('data', (c) => (result.stdout += c));
    child.stderr.on('data', (c) => (result.stderr += c));
    result.status = await new Promise((resolve) => child.on('close', resolve));
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`database roles ready \\[owner=coffer_initmain_owner_${id}\\] \\[app=coffer_initmain_app_${id}\\]`));
    assert.match(result.stdout, /openbao ready: transit at transit\/, policy coffer, approle coffer/);
    assert.deepEqual(bao.roles.get('coffer')!.secretIds, [secretId]);
    for (const secret of ['owner-secret-pw', 'app-secret-pw', secretId, bao.token, bao.unsealKey]) {
      assert.equal(`${result.stdout}${result.stderr}`.includes(secret), false);
    }
  });
});
