import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { randomId } from '@coffer/crypto';
import { REPO_ROOT } from '../support/api-process';
import { dropInstallation, Installation, plainEnv, readInstallation, startUp } from '../support/local-start';
import { deleteRedisKeys, dropDatabasesAndRoles, PG_ADMIN_URL } from '../support/test-env';

/**
 * `coffer backup` and `coffer restore` through the local start (`npm run up`, scripts/up.mjs) on
 * the real PostgreSQL and Redis `npm test` provides: backup with the objects, wipe (databases,
 * object store, state directory, Redis keys; the roles and the master key stay), restore, start
 * again, and everything reads back.
 */

const PASSPHRASE = `backup-${randomBytes(12).toString('base64url')}`;

/** The local start of this test, ready within 2 minutes. */
const startHere = (home: string) =>
  startUp(
    home,
    {
      // No checkpoint anchor is written into the store while the test counts its objects.
      AUDIT_CHECKPOINT_CRON: '0 0 0 1 1 *',
      // In the state directory (the default is the checkout's .coffer/storage), in 1 MiB chunks.
      STORAGE_DIR: join(home, 'storage'),
      PACKAGE_CHUNK_BYTES: String(1024 * 1024),
    },
    120_000,
  );

/** `npm run cli -- ...` against the state directory's local.json, as an operator runs it. */
function cli(home: string, args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, ['scripts/cli.mjs', ...args], {
    cwd: REPO_ROOT,
    env: { ...plainEnv(), COFFER_HOME: home, ...env },
    encoding: 'utf8',
    timeout: 240_000,
  });
}

function call(method: string, url: string, ca: Buffer, headers: Record<string, string>, body?: Buffer | object): Promise<{ status: number; body: Buffer; json: any }> {
  const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, {
      method,
      ca,
      headers: {
        ...(payload && { 'content-length': String(payload.length), 'content-type': Buffer.isBuffer(body) ? 'application/octet-stream' : 'application/json' }),
        ...headers,
      },
    }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (p: Buffer) => parts.push(p));
      res.on('end', () => {
        const bytes = Buffer.concat(parts);
        let json: unknown;
        try {
          json = JSON.parse(bytes.toString('utf8'));
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body: bytes, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function orgRows(installation: Installation): Promise<string[]> {
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${installation.database}`;
  const client = new Client({ connectionString: url.toString() });
  await client.connect();
  try {
    return (await client.query<{ slug: string }>('SELECT slug FROM organizations ORDER BY slug')).rows.map((r) => r.slug);
  } finally {
    await client.end();
  }
}

async function databasesOf(installation: Installation): Promise<string[]> {
  const client = new Client({ connectionString: PG_ADMIN_URL });
  await client.connect();
  try {
    return (await client.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE $1 || '%' ORDER BY datname", [installation.database])).rows.map((r) => r.datname);
  } finally {
    await client.end();
  }
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name)).sort();
}

test('local start on real PostgreSQL: coffer backup --objects, wipe, coffer restore, start again: every package reads back byte for byte, every chain verifies, the admin token works; a tampered bundle, a wrong passphrase and a non-empty installation are refused and change nothing', async () => {
  const home = mkdtempSync(join(tmpdir(), 'coffer-backup-'));
  const bundles = mkdtempSync(join(tmpdir(), 'coffer-bundles-'));
  let installation: Installation | undefined;
  let up = await startHere(home);
  try {
    let { local, ca } = await up.ready();
    installation = readInstallation(home);
    const admin = { authorization: `Bearer ${local.adminToken}` };

    // Two orgs, each with its first admin; packages of one and several chunks, two versions.
    const id = randomId(3);
    const orgs: { slug: string; key: string; packages: { name: string; version: number; sha256: string }[] }[] = [];
    for (const slug of [`alpha${id}`, `beta${id}`]) {
      let created;
      const deadline = Date.now() + 60_000;
      do {
        created = await call('POST', `${local.apiUrl}/api/v1/organizations`, ca, admin, { slug, name: slug, admin: { email: `root@${slug}.example`, displayName: 'Root' } });
        if (created.status === 202) await new Promise((r) => setTimeout(r, 500));
      } while (created.status === 202 && Date.now() < deadline);
      assert.equal(created.status, 201, created.body.toString());
      orgs.push({ slug, key: created.json.admin.apiKey.secret, packages: [] });
    }
    for (const [i, org] of orgs.entries()) {
      for (const [name, bytes] of [['handbook', randomBytes(3 * 1024 * 1024 + 4321 * (i + 1))], ['notes', randomBytes(10_000)], ['notes', randomBytes(777)]] as const) {
        const put = await call('PUT', `${local.apiUrl}/api/v1/organizations/${org.slug}/packages/${name}`, ca, { authorization: `Bearer ${org.key}` }, bytes);
        assert.equal(put.status, 201, put.body.toString());
        org.packages.push({ name, version: put.json.version ?? org.packages.filter((p) => p.name === name).length + 1, sha256: sha256(bytes) });
      }
    }
    const caBefore = readFileSync(local.caCertPath);
    const tlsDir = join(home, 'tls');
    const tlsFiles = filesUnder(tlsDir);
    assert.ok(tlsFiles.some((f) => f.endsWith('.key')), `the internal CA's key is in ${tlsDir}: ${tlsFiles.join(', ')}`);
    const objectFiles = filesUnder(join(home, 'storage'));
    const objectCount = objectFiles.length;
    assert.ok(objectCount >= 8, `objects stored: ${objectCount}`);

    // The backup runs while the API, the worker and the provisioner run.
    const bundle = join(bundles, 'full.coffer-backup');
    const backup = cli(home, ['backup', bundle, '--objects'], { COFFER_BACKUP_PASSPHRASE: PASSPHRASE });
    assert.equal(backup.status, 0, backup.stderr);
    const summary = JSON.parse(backup.stdout);
    assert.deepEqual([summary.databases, summary.organizations, summary.objects.included, summary.objects.count], [3, 2, true, objectCount]);
    assert.equal(summary.stateFiles, tlsFiles.length);
    assert.equal(summary.sha256, sha256(readFileSync(bundle)));
    assert.ok(summary.notIncluded.some((n: string) => /master key/.test(n)), summary.notIncluded.join('; '));
    assert.equal(statSync(bundle).mode & 0o777, 0o600);
    // Progress on stderr: each database, the state, the objects.
    assert.match(backup.stderr, /\[backup\] databases\/control\.dump: .* in [\d.]+ s, sha256 /);
    assert.equal(backup.stderr.match(/\[backup\] databases\/coffer_\w+_org_\w+\.dump: /g)?.length, 2, backup.stderr);
    assert.match(backup.stderr, /\[backup\] objects: [\d.]+ \w+ in .* (\d+) object\(s\)/);
    // Encrypted: no database content, key or object name in clear.
    const raw = readFileSync(bundle);
    for (const clear of ['PGDMP', 'BEGIN', 'organizations', orgs[0].slug, 'state/tls']) assert.equal(raw.indexOf(clear), -1, clear);

    // Without the passphrase, with a short one, onto an existing file: refused, no file written.
    const noPass = cli(home, ['backup', join(bundles, 'none')]);
    assert.equal(noPass.status, 1);
    assert.match(noPass.stderr, /set COFFER_BACKUP_PASSPHRASE/);
    const exists = cli(home, ['backup', bundle], { COFFER_BACKUP_PASSPHRASE: PASSPHRASE });
    assert.match(exists.stderr, /exists: name a new file/);
    assert.deepEqual(readdirSync(bundles), ['full.coffer-backup']);
    // Without --objects, under a key file: the listing (key, size, sha256) only.
    const keyFile = join(bundles, 'backup.key');
    writeFileSync(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
    const listingBundle = join(bundles, 'listing.coffer-backup');
    const listingBackup = cli(home, ['backup', listingBundle, '--key-file', keyFile]);
    assert.equal(listingBackup.status, 0, listingBackup.stderr);
    assert.deepEqual(JSON.parse(listingBackup.stdout).objects, { count: objectCount, bytes: JSON.parse(listingBackup.stdout).objects.bytes, included: false });
    assert.ok(statSync(listingBundle).size < statSync(bundle).size / 2, 'the objects are not in it');

    assert.equal(await up.stop(), 0, up.output().slice(-2000));
    const databasesBefore = await databasesOf(installation);
    const slugsBefore = await orgRows(installation);
    assert.equal(databasesBefore.length, 3);

    // A tampered bundle (one byte flipped in the middle) and a wrong passphrase: refused even
    // with --force, before anything changes.
    const tampered = join(bundles, 'tampered.coffer-backup');
    const flipped = Buffer.from(raw);
    flipped[Math.floor(flipped.length / 2)] ^= 0x04;
    writeFileSync(tampered, flipped);
    const refusedTamper = cli(home, ['restore', tampered, '--force'], { COFFER_BACKUP_PASSPHRASE: PASSPHRASE });
    assert.equal(refusedTamper.status, 1, refusedTamper.stderr);
    assert.match(refusedTamper.stderr, /^coffer restore: the bundle .*tampered\.coffer-backup is damaged or has been tampered with \(chunk \d+ fails authentication\); nothing was changed$/m);
    const refusedPass = cli(home, ['restore', bundle, '--force'], { COFFER_BACKUP_PASSPHRASE: `${PASSPHRASE}x` });
    assert.equal(refusedPass.status, 1);
    assert.match(refusedPass.stderr, /^coffer restore: the passphrase \(or key file\) does not open the bundle .*; nothing was changed$/m);
    // A good bundle onto the installation it came from, without --force: refused, not merged.
    const refusedNonEmpty = cli(home, ['restore', bundle], { COFFER_BACKUP_PASSPHRASE: PASSPHRASE });
    assert.equal(refusedNonEmpty.status, 1);
    assert.match(refusedNonEmpty.stderr, /this installation is not empty \(database\(s\) coffer_\w+.* and objects in the object store\): restore into an empty one, or give --force/);
    assert.deepEqual(await databasesOf(installation), databasesBefore);
    assert.deepEqual(await orgRows(installation), slugsBefore);
    assert.deepEqual(filesUnder(tlsDir), tlsFiles);
    assert.ok(readFileSync(local.caCertPath).equals(caBefore));

    // Wipe: every database, the object store, the state directory's TLS files, the Redis keys.
    // The roles, their passwords, the master key and the configuration (local.json, as .env in
    // compose) stay: a new host has run init with the same .env and has the master key back.
    await dropDatabasesAndRoles(installation.database, []);
    await deleteRedisKeys(installation.redisKeyPrefix);
    rmSync(join(home, 'storage'), { recursive: true, force: true });
    rmSync(tlsDir, { recursive: true, force: true });
    assert.deepEqual(await databasesOf(installation), []);

    const restore = cli(home, ['restore', bundle], { COFFER_BACKUP_PASSPHRASE: PASSPHRASE });
    assert.equal(restore.status, 0, restore.stderr);
    const restored = JSON.parse(restore.stdout);
    assert.deepEqual(restored.databases.map((d: { role: string }) => d.role), ['control', 'org', 'org']);
    assert.deepEqual([restored.objects.restored, restored.stateFiles, restored.replacedDatabases], [objectCount, tlsFiles.length, []]);
    assert.match(restore.stderr, /\[restore\] checking .* parts, every sha256 as in the manifest/);
    assert.match(restore.stderr, /\[restore\] databases\/control\.dump: /);
    assert.deepEqual(await databasesOf(installation), databasesBefore);
    assert.deepEqual(filesUnder(tlsDir), tlsFiles);
    assert.equal(filesUnder(join(home, 'storage')).length, objectCount);

    // Started again on the restored installation.
    up = await startHere(home);
    ({ local, ca } = await up.ready());
    assert.ok(ca.equals(caBefore), 'the same internal CA: clients that trust it still connect');
    const adminAgain = await call('GET', `${local.apiUrl}/api/v1/organizations`, ca, admin);
    assert.equal(adminAgain.status, 200, adminAgain.body.toString());
    assert.deepEqual(adminAgain.json.organizations.map((o: { slug: string }) => o.slug).sort(), orgs.map((o) => o.slug).sort());
    const control = await call('GET', `${local.apiUrl}/api/v1/admin/audit-logs/verify`, ca, admin);
    assert.equal(control.status, 200, control.body.toString());
    assert.equal(control.json.valid, true, JSON.stringify(control.json));
    for (const org of orgs) {
      const auth = { authorization: `Bearer ${org.key}` };
      for (const pkg of org.packages) {
        const got = await call('GET', `${local.apiUrl}/api/v1/organizations/${org.slug}/packages/${pkg.name}/versions/${pkg.version}/content`, ca, auth);
        assert.equal(got.status, 200, `${org.slug}/${pkg.name} v${pkg.version}: ${got.body.toString().slice(0, 300)}`);
        assert.equal(sha256(got.body), pkg.sha256, `${org.slug}/${pkg.name} v${pkg.version}`);
      }
      const verify = await call('GET', `${local.apiUrl}/api/v1/organizations/${org.slug}/audit-logs/verify`, ca, auth);
      assert.equal(verify.status, 200, verify.body.toString());
      assert.equal(verify.json.valid, true, `${org.slug}: ${JSON.stringify(verify.json)}`);
      // Still writable: a new version after the restore.
      const put = await call('PUT', `${local.apiUrl}/api/v1/organizations/${org.slug}/packages/after-restore`, ca, auth, randomBytes(1000));
      assert.equal(put.status, 201, put.body.toString());
    }
    assert.equal(await up.stop(), 0, up.output().slice(-2000));

    // The listing-only bundle over this (stopped) installation with --force: the databases are
    // replaced; the objects are checked against the store, and one that went missing is named (exit 2).
    const lost = objectFiles[0];
    rmSync(lost);
    const partial = cli(home, ['restore', listingBundle, '--force', '--key-file', keyFile]);
    assert.equal(partial.status, 2, partial.stderr);
    const partialSummary = JSON.parse(partial.stdout);
    assert.deepEqual(partialSummary.replacedDatabases, databasesBefore);
    assert.deepEqual(partialSummary.objects, { included: false, restored: 0, checked: objectCount, missing: [lost.slice(join(home, 'storage').length + 1)], mismatched: [] });
    assert.match(partial.stderr, /\[restore\] objects: \d+ listed, 1 missing, 0 differing from the listing/);
    // Without the key file, the passphrase does not open it.
    const wrongSecret = cli(home, ['restore', listingBundle, '--force'], { COFFER_BACKUP_PASSPHRASE: PASSPHRASE });
    assert.match(wrongSecret.stderr, /does not open the bundle/);
  } finally {
    await up.stop();
    await dropInstallation(installation);
    rmSync(home, { recursive: true, force: true });
    rmSync(bundles, { recursive: true, force: true });
  }
});
