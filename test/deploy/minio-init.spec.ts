import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMPOSE_DIR } from './compose-file';

/**
 * deploy/compose/minio/minio-init.sh with a stand-in `mc` on the PATH that records its arguments,
 * keeps the policy file it is given and remembers attached policies: what the script asks MinIO,
 * not what MinIO does with it (no MinIO server here).
 */
describe('minio-init.sh (recording mc stand-in)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-minio-init-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const fakeMc = join(dir, 'mc');
  writeFileSync(
    fakeMc,
    `#!/bin/sh
echo "$*" >> "${dir}/calls"
case "$*" in
  "admin policy create "*) cp "$6" "${dir}/policy.json" ;;
  "admin policy attach "*) echo attached >> "${dir}/attached" ;;
  "admin user info "*) echo "AccessKey: $5"; [ -f "${dir}/attached" ] && echo "PolicyName: coffer-storage" ;;
esac
exit 0
`,
  );
  chmodSync(fakeMc, 0o755);
  const env = {
    PATH: `${dir}:${process.env.PATH}`,
    TMPDIR: dir,
    MINIO_ROOT_USER: 'root-user',
    MINIO_ROOT_PASSWORD: 'root-password-secret',
    MINIO_BUCKET: 'coffer-bucket',
    MINIO_COFFER_ACCESS_KEY: 'coffer-access',
    MINIO_COFFER_SECRET_KEY: 'coffer-secret-key-value',
  };
  const run = () => spawnSync('sh', [join(COMPOSE_DIR, 'minio/minio-init.sh')], { env, encoding: 'utf8' });

  test('creates the bucket, turns on its default encryption, and gives Coffer a user limited to it', () => {
    const result = run();
    assert.equal(result.status, 0, result.stderr);
    const calls = readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n');
    assert.deepEqual(calls, [
      'alias set coffer http://minio:9000 root-user root-password-secret',
      'mb --ignore-existing coffer/coffer-bucket',
      'encrypt set sse-s3 coffer/coffer-bucket',
      `admin policy create coffer coffer-storage ${join(dir, 'coffer-storage.json')}`,
      'admin user add coffer coffer-access coffer-secret-key-value',
      'admin user info coffer coffer-access',
      'admin policy attach coffer coffer-storage --user coffer-access',
    ]);
    const policy = JSON.parse(readFileSync(join(dir, 'policy.json'), 'utf8'));
    const statements = policy.Statement as { Effect: string; Action: string[]; Resource: string[] }[];
    assert.deepEqual(
      statements.flatMap((s) => s.Resource).sort(),
      ['arn:aws:s3:::coffer-bucket', 'arn:aws:s3:::coffer-bucket/*'],
      'this bucket only',
    );
    const actions = statements.flatMap((s) => s.Action);
    assert.ok(statements.every((s) => s.Effect === 'Allow'));
    assert.ok(actions.every((a) => /^s3:[A-Za-z]+$/.test(a)), 'no wildcard action');
    assert.ok(!actions.some((a) => /Policy|DeleteBucket|PutBucket|Encryption$/.test(a) && a !== 's3:GetEncryptionConfiguration'), 'no bucket administration');
    assert.doesNotMatch(result.stdout, /secret/);
  });

  test('run again, it attaches the policy only once', () => {
    assert.equal(run().status, 0);
    const attaches = readFileSync(join(dir, 'calls'), 'utf8').split('\n').filter((c) => c.startsWith('admin policy attach'));
    assert.equal(attaches.length, 1);
  });
});
