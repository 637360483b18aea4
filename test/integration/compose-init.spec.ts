import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import { randomId } from '@coffer/crypto';
import { withClient, withDatabase } from '@coffer/database';
import { VaultKmsProvider } from '@coffer/kms';
import { cofferTransitPolicy, initDatabaseRoles } from '../../apps/cli/src/compose-init';
import { dropDatabasesAndRoles, PG_ADMIN_URL } from '../support/test-env';
import { VaultTransitDouble } from '../support/vault-transit-double';

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
  const vault = new VaultTransitDouble({ mount: 'coffer-transit' });
  const policy = cofferTransitPolicy('coffer-transit');
  before(() => vault.start());
  after(() => vault.stop());

  test('every request the Vault KMS provider makes is allowed by the policy', async () => {
    const kms = new VaultKmsProvider({ address: vault.address, token: vault.token, mount: 'coffer-transit', keyPrefix: '', timeoutMs: 5000 });
    await kms.ensureKey('coffer-org-1');
    const dataKey = await kms.generateDataKey('coffer-org-1');
    await kms.unwrap('coffer-org-1', dataKey.wrapped);
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
    for (const path of ['keys/k/trim', 'export/encryption-key/k', 'backup/k', 'restore/k', 'keys', 'encrypt/k', 'hmac/k']) {
      assert.equal(policyAllows(policy, 'POST', `coffer-transit/${path}`), false, path);
    }
    assert.equal(policyAllows(policy, 'POST', 'transit/decrypt/k'), false);
    assert.doesNotMatch(policy, /\*|"delete"|"sudo"|"list"/);
    assert.match(policy, /path "coffer-transit\/keys\/\+\/config" \{[^}]*allowed_parameters = \{ "min_decryption_version" = \[\] \}/);
  });
});
