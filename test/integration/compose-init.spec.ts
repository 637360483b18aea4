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
import { cofferInitPolicy, cofferTransitPolicy, initDatabaseRoles, initOpenBao, SECRET_ID_TTL_SECONDS } from '../../apps/cli/src/compose-init';
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

/** A token of the double holding `policies`, made as an operator would (`auth/token/create` with the root token). */
async function tokenWith(bao: OpenBaoDouble, policies: string[]): Promise<string> {
  const res = await fetch(`${bao.address}/v1/auth/token/create`, {
    method: 'POST',
    headers: { 'x-vault-token': bao.token, 'content-type': 'application/json' },
    body: JSON.stringify({ policies }),
  });
  assert.equal(res.status, 200);
  return ((await res.json()) as { auth: { client_token: string } }).auth.client_token;
}

/** One request to the double with a token: its status. */
async function statusOf(bao: OpenBaoDouble, token: string, method: string, path: string, body?: unknown): Promise<number> {
  const res = await fetch(`${bao.address}/v1/${path}`, {
    method,
    headers: { 'x-vault-token': token, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  await res.arrayBuffer();
  return res.status;
}

describe("coffer init: OpenBao policy covers Coffer's transit calls on its own keys and nothing more (Vault transit double, ACL policies)", () => {
  const vault = new OpenBaoDouble({ mount: 'coffer-transit' });
  let token = '';
  before(async () => {
    await vault.start();
    vault.policies.set('coffer', cofferTransitPolicy('coffer-transit', 'site1-'));
    token = await tokenWith(vault, ['coffer']);
  });
  after(() => vault.stop());

  test('every request the Vault KMS provider makes, under KMS_VAULT_KEY_PREFIX, is allowed by the policy', async () => {
    const kms = new VaultKmsProvider({ address: vault.address, token, mount: 'coffer-transit', keyPrefix: 'site1-', timeoutMs: 5000 });
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
    assert.ok(vault.requests.filter((r) => r.includes('/coffer-transit/')).length >= 10);
  });

  test('keys without the prefix, destructive and exporting calls, other parameters and another mount are refused (403)', async () => {
    const refused: [string, string, unknown?][] = [
      ['POST', 'coffer-transit/keys/other-key', { type: 'aes256-gcm96' }],
      ['POST', 'coffer-transit/keys/coffer-org-1', { type: 'aes256-gcm96' }],
      ['POST', 'coffer-transit/encrypt/coffer-org-1', { plaintext: 'AA==' }],
      ['POST', 'coffer-transit/keys/site1-coffer-org-1/trim', { min_available_version: 2 }],
      ['POST', 'coffer-transit/keys/site1-coffer-org-1/config', { deletion_allowed: true }],
      ['POST', 'coffer-transit/keys/site1-coffer-org-1', { type: 'aes256-gcm96', exportable: true }],
      ['DELETE', 'coffer-transit/keys/site1-coffer-org-1'],
      ['GET', 'coffer-transit/export/encryption-key/site1-coffer-org-1'],
      ['GET', 'coffer-transit/backup/site1-coffer-org-1'],
      ['GET', 'coffer-transit/keys?list=true'],
      ['POST', 'coffer-transit/hmac/site1-coffer-org-1', { input: 'AA==' }],
      ['POST', 'transit/decrypt/site1-coffer-org-1', { ciphertext: 'vault:v1:AA==' }],
      ['POST', 'sys/policies/acl/coffer', { policy: 'path "*" {}' }],
    ];
    for (const [method, path, body] of refused) assert.equal(await statusOf(vault, token, method, path, body), 403, `${method} ${path}`);
    const policy = cofferTransitPolicy('coffer-transit');
    assert.doesNotMatch(policy, /"delete"|"sudo"|"list"/);
    assert.match(policy, /path "coffer-transit\/keys\/coffer-\*" \{[^}]*allowed_parameters = \{ "type" = \["aes256-gcm96", "ed25519"\], "min_decryption_version" = \[\] \}/);
  });
});

describe('coffer init: OpenBao setup (OpenBao sys API double)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-init-'));
  const roleId = randomUUID();
  const doubles: OpenBaoDouble[] = [];
  const lines: string[] = [];
  const fresh = async () => {
    const bao = new OpenBaoDouble({ uninitialized: true });
    await bao.start();
    doubles.push(bao);
    return bao;
  };
  const init = (bao: OpenBaoDouble, keysFile: string, extra: Partial<Parameters<typeof initOpenBao>[0]> = {}) =>
    initOpenBao({ address: bao.address, mount: 'transit', keysFile, secretIdFile: join(dirname(keysFile), 'secret-id'), roleId, log: (line) => lines.push(line), ...extra });
  const secretIdOf = (keysFile: string) => readFileSync(join(dirname(keysFile), 'secret-id'), 'utf8');
  const keysOf = (keysFile: string) => JSON.parse(readFileSync(keysFile, 'utf8'));
  after(async () => {
    await Promise.all(doubles.map((d) => d.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  test('a new server is initialized, unsealed, given transit, the policies, the AppRole and an expiring secret id; the root token is revoked', async () => {
    const bao = await fresh();
    const keysFile = join(dir, 'first', 'openbao-keys.json');
    await init(bao, keysFile);
    assert.equal(bao.initialized && !bao.sealed, true);
    const keys = keysOf(keysFile);
    assert.deepEqual(Object.keys(keys).sort(), ['initToken', 'unsealKeys'], 'no root token is kept');
    assert.deepEqual(keys.unsealKeys, [bao.unsealKey]);
    assert.equal(bao.tokenLive(bao.token), false, 'the root token is revoked');
    const initToken = bao.tokens.get(keys.initToken)!;
    assert.deepEqual(initToken.policies, ['default', 'coffer-init']);
    assert.equal(initToken.periodSeconds, 720 * 3600, 'periodic: lives while renewed');
    assert.equal(statSync(keysFile).mode & 0o777, 0o600);
    assert.equal(bao.mounts.get('transit/'), 'transit');
    assert.equal(bao.policies.get('coffer'), cofferTransitPolicy('transit'));
    assert.equal(bao.policies.get('coffer-init'), cofferInitPolicy('transit'));
    assert.equal(bao.auths.get('approle/'), 'approle');
    const role = bao.roles.get('coffer')!;
    assert.deepEqual(role.config.token_policies, ['coffer']);
    assert.equal(role.config.secret_id_ttl, SECRET_ID_TTL_SECONDS);
    assert.equal(role.roleId, roleId);
    assert.deepEqual(bao.liveSecretIds(), [secretIdOf(keysFile)]);
    assert.equal(role.secretIds[0].expiresAt! - role.secretIds[0].createdAt, SECRET_ID_TTL_SECONDS * 1000);
    assert.equal(statSync(join(dirname(keysFile), 'secret-id')).mode & 0o777, 0o600);
    const printed = lines.join('\n');
    for (const secret of [bao.unsealKey, bao.token, keys.initToken, secretIdOf(keysFile)]) assert.equal(printed.includes(secret), false, 'no secret is printed');
  });

  test('the scoped init token can set Coffer up again but not touch keys, seal, policies of its own or tokens', async () => {
    const bao = await fresh();
    const keysFile = join(dir, 'scoped', 'openbao-keys.json');
    await init(bao, keysFile);
    const { initToken } = keysOf(keysFile);
    for (const [method, path, body] of [
      ['POST', 'transit/keys/coffer-org-1', { type: 'aes256-gcm96' }],
      ['POST', 'transit/decrypt/coffer-org-1', { ciphertext: 'vault:v1:AA==' }],
      ['POST', 'sys/policies/acl/coffer-init', { policy: 'path "*" { capabilities = ["sudo"] }' }],
      ['POST', 'sys/mounts/other', { type: 'kv' }],
      ['POST', 'auth/token/create', { policies: ['coffer'] }],
      ['POST', 'auth/approle/role/other', { token_policies: ['coffer'] }],
    ] as const) {
      assert.equal(await statusOf(bao, initToken, method, path, body), 403, `${method} ${path}`);
    }
  });

  test("once set up, the server serves Coffer's Vault KMS provider, logged in with the AppRole and the secret id of the file", async () => {
    const bao = await fresh();
    const keysFile = join(dir, 'served', 'openbao-keys.json');
    await init(bao, keysFile);
    const kms = new VaultKmsProvider({ address: bao.address, appRole: { roleId, secretId: () => secretIdOf(keysFile) }, mount: 'transit', keyPrefix: '', timeoutMs: 5000 });
    await kms.ensureKey('coffer-org-1');
    const dataKey = await kms.generateDataKey('coffer-org-1');
    assert.deepEqual(await kms.unwrap('coffer-org-1', dataKey.wrapped), dataKey.plaintext);
    assert.ok(bao.requests.includes('POST /v1/auth/approle/login'));
    assert.ok(bao.requests.includes('POST /v1/transit/datakey/plaintext/coffer-org-1'));
  });

  test('run again after a restart, it unseals with the kept key, works with the scoped token and registers nothing twice', async () => {
    const bao = await fresh();
    const keysFile = join(dir, 'rerun', 'openbao-keys.json');
    await init(bao, keysFile);
    const first = { keys: readFileSync(keysFile, 'utf8'), secretId: secretIdOf(keysFile) };
    await bao.restart();
    assert.equal(bao.sealed, true);
    await init(bao, keysFile);
    assert.equal(bao.sealed, false);
    assert.equal(readFileSync(keysFile, 'utf8'), first.keys, 'the same init token');
    assert.deepEqual(bao.liveSecretIds(), [first.secretId], 'a fresh secret id is kept');
    assert.equal(bao.requests.filter((r) => r === 'PUT /v1/sys/init').length, 1);
    assert.equal(bao.requests.filter((r) => r.startsWith('POST /v1/sys/mounts/')).length, 1);
  });

  test('a secret id past half its TTL is replaced at the next run; the old one works until it expires; the .env one is destroyed', async () => {
    const bao = await fresh();
    const keysFile = join(dir, 'renew', 'openbao-keys.json');
    await init(bao, keysFile);
    const legacy = randomBytes(32).toString('hex');
    await fetch(`${bao.address}/v1/auth/approle/role/coffer/custom-secret-id`, {
      method: 'POST',
      headers: { 'x-vault-token': keysOf(keysFile).initToken },
      body: JSON.stringify({ secret_id: legacy }),
    }).then((r) => assert.equal(r.status, 403, 'the scoped token cannot register a secret id of its choosing'));
    bao.roles.get('coffer')!.secretIds.push({ id: legacy, accessor: 'a', createdAt: bao.now() });
    const old = secretIdOf(keysFile);
    bao.advanceClock((SECRET_ID_TTL_SECONDS * 1000) / 2 + 60_000);
    await init(bao, keysFile, { legacySecretId: legacy });
    const next = secretIdOf(keysFile);
    assert.notEqual(next, old);
    assert.deepEqual(bao.liveSecretIds().sort(), [old, next].sort(), 'the .env one destroyed, the old one still valid');
    bao.advanceClock(SECRET_ID_TTL_SECONDS * 1000);
    assert.deepEqual(bao.liveSecretIds(), [], 'both expire: no secret id lives forever');
  });

  test('with a lapsed init token init says how to recover, and a root token the operator generated recovers it (and is revoked)', async () => {
    const bao = await fresh();
    const keysFile = join(dir, 'lapsed', 'openbao-keys.json');
    await init(bao, keysFile);
    bao.advanceClock(721 * 3600 * 1000);
    await assert.rejects(init(bao, keysFile), /init token has lapsed .* COFFER_INIT_ROOT_TOKEN/);
    const generated = await tokenWith(bao, []).catch(() => undefined);
    assert.equal(generated, undefined, 'the original root token is gone');
    bao.tokens.set('hvs.generated-root', { id: 'hvs.generated-root', accessor: 'x', policies: ['root'], ttlSeconds: 0, displayName: 'root' });
    await init(bao, keysFile, { rootToken: 'hvs.generated-root' });
    assert.equal(bao.tokenLive('hvs.generated-root'), false);
    assert.equal(bao.tokenLive(keysOf(keysFile).initToken), true);
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
    writeFileSync(keysFile, '{"unsealKeys":["old"],"initToken":"old"}');
    await assert.rejects(init(bao, keysFile), /holds keys but OpenBao is not initialized/);
    assert.equal(readFileSync(keysFile, 'utf8'), '{"unsealKeys":["old"],"initToken":"old"}');
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
      KMS_VAULT_SECRET_ID_FILE: join(dir, 'approle', 'secret-id'),
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
    const secretId = readFileSync(join(dir, 'approle', 'secret-id'), 'utf8');
    assert.deepEqual(bao.liveSecretIds(), [secretId]);
    const { initToken } = JSON.parse(readFileSync(join(dir, 'openbao-keys.json'), 'utf8'));
    for (const secret of ['owner-secret-pw', 'app-secret-pw', secretId, bao.token, bao.unsealKey, initToken]) {
      assert.equal(`${result.stdout}${result.stderr}`.includes(secret), false);
    }
  });
});
