import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'pg';
import { loadConfig } from '@coffer/config';
import { CachingKmsProvider } from './data-key-cache';
import { createKmsProvider } from './kms-provider.factory';
import { loadLocalMasterKey } from './local-kms.provider';

const base = {
  DATABASE_OWNER_URL: 'postgres://owner@127.0.0.1/coffer',
  DATABASE_APP_URL: 'postgres://app@127.0.0.1/coffer',
};

describe('KMS provider factory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-kms-'));
  const pool = new Pool({ connectionString: base.DATABASE_APP_URL });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await pool.end();
  });

  test('local is the default provider, behind the data-key cache', () => {
    const kms = createKmsProvider(loadConfig({ ...base, KMS_LOCAL_MASTER_KEY: randomBytes(32).toString('base64') }), pool);
    assert.ok(kms instanceof CachingKmsProvider);
    assert.equal(kms.kind, 'local');
  });

  test('KMS_PROVIDER=vault needs an address and a token or an AppRole', () => {
    const vault = { ...base, KMS_PROVIDER: 'vault', KMS_VAULT_ADDR: 'http://127.0.0.1:8200' };
    assert.throws(() => createKmsProvider(loadConfig(vault), pool), /KMS_VAULT_TOKEN, or KMS_VAULT_ROLE_ID/);
    assert.throws(() => createKmsProvider(loadConfig({ ...base, KMS_PROVIDER: 'vault', KMS_VAULT_TOKEN: 't' }), pool), /KMS_VAULT_ADDR/);
    assert.equal(createKmsProvider(loadConfig({ ...vault, KMS_VAULT_TOKEN: 'hvs.x' }), pool).kind, 'vault');
    const appRole = { ...vault, KMS_VAULT_ROLE_ID: 'role', KMS_VAULT_SECRET_ID: 'secret' };
    assert.equal(createKmsProvider(loadConfig(appRole), pool).kind, 'vault');
  });

  test('the master key is read from a file, raw or base64, or from a base64 secret', () => {
    const key = randomBytes(32);
    writeFileSync(join(dir, 'raw.key'), key);
    writeFileSync(join(dir, 'b64.key'), `${key.toString('base64')}\n`);
    assert.deepEqual(loadLocalMasterKey({ file: join(dir, 'raw.key') }), key);
    assert.deepEqual(loadLocalMasterKey({ file: join(dir, 'b64.key') }), key);
    assert.deepEqual(loadLocalMasterKey({ base64: key.toString('base64') }), key);
  });

  test('a missing, short or doubly configured master key is refused without showing it', () => {
    const short = randomBytes(16).toString('base64');
    assert.throws(() => loadLocalMasterKey({}), /needs a master key/);
    assert.throws(
      () => loadLocalMasterKey({ base64: short }),
      (error: Error) => /must be 32 bytes/.test(error.message) && !error.message.includes(short),
    );
    assert.throws(() => loadLocalMasterKey({ file: 'x', base64: short }), /not both/);
    assert.throws(() => createKmsProvider(loadConfig(base), pool), /needs a master key/);
  });
});
