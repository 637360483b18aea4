import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMPOSE_DIR } from './compose-file';
import { REPO_ROOT } from '../support/api-process';

const BUCKET = 'coffer-bucket';

/**
 * deploy/compose/seaweedfs/seaweedfs.sh with a stand-in `weed` on the PATH that records its
 * arguments and keeps the identities file it is given: what the script asks SeaweedFS, not what
 * SeaweedFS does with it (no SeaweedFS here).
 */
describe('seaweedfs.sh (recording weed stand-in)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-seaweedfs-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const fakeWeed = join(dir, 'weed');
  writeFileSync(
    fakeWeed,
    `#!/bin/sh
echo "$*" > "${dir}/args"
for arg in "$@"; do
  case "$arg" in -s3.config=*) cp "\${arg#-s3.config=}" "${dir}/identities.json"; stat -c %a "\${arg#-s3.config=}" > "${dir}/mode" ;; esac
done
exit 0
`,
  );
  chmodSync(fakeWeed, 0o755);
  const env = {
    PATH: `${dir}:${process.env.PATH}`,
    TMPDIR: dir,
    SEAWEEDFS_ADMIN_ACCESS_KEY: 'coffer-root-0a1b2c3d',
    SEAWEEDFS_ADMIN_SECRET_KEY: 'admin-secret-value',
    SEAWEEDFS_BUCKET: BUCKET,
    SEAWEEDFS_COFFER_ACCESS_KEY: 'coffer-access',
    SEAWEEDFS_COFFER_SECRET_KEY: 'coffer-secret-key-value',
    WEED_S3_SSE_KEY: 'c2VjcmV0LWtleS1tYXRlcmlhbA==',
  };
  const run = (overrides: Record<string, string> = {}) =>
    spawnSync('sh', [join(COMPOSE_DIR, 'seaweedfs/seaweedfs.sh')], { env: { ...env, ...overrides }, encoding: 'utf8' });

  test('runs one node with the S3 gateway, an admin identity, and Coffer limited to read, write and list in its bucket', () => {
    const result = run();
    assert.equal(result.status, 0, result.stderr);
    const args = readFileSync(join(dir, 'args'), 'utf8').trim().split(' ');
    assert.equal(args[0], 'server');
    for (const arg of ['-dir=/data', '-s3', '-s3.port=8333', `-s3.config=${join(dir, 'coffer-s3.json')}`]) assert.ok(args.includes(arg), arg);
    assert.equal(readFileSync(join(dir, 'mode'), 'utf8').trim(), '600', 'the identities file is private');
    const { identities } = JSON.parse(readFileSync(join(dir, 'identities.json'), 'utf8')) as {
      identities: { name: string; credentials: { accessKey: string; secretKey: string }[]; actions: string[] }[];
    };
    const byKey = new Map(identities.map((i) => [i.credentials[0].accessKey, i]));
    assert.deepEqual([...byKey.keys()].sort(), ['coffer-access', 'coffer-root-0a1b2c3d']);
    assert.equal(byKey.get('coffer-access')!.credentials[0].secretKey, 'coffer-secret-key-value');
    assert.deepEqual(byKey.get('coffer-access')!.actions.sort(), [`List:${BUCKET}`, `Read:${BUCKET}`, `Write:${BUCKET}`], 'this bucket only, no Admin');
    assert.ok(byKey.get('coffer-root-0a1b2c3d')!.actions.includes('Admin'), 'seaweedfs-init sets the encryption as admin');
    assert.doesNotMatch(result.stdout + result.stderr, /secret/);
  });

  test('refuses values that would break out of the identities file, and starts nothing', () => {
    rmSync(join(dir, 'args'), { force: true });
    const bads: Record<string, string>[] = [{ SEAWEEDFS_COFFER_SECRET_KEY: 'x", "actions": ["Admin' }, { SEAWEEDFS_BUCKET: '' }];
    for (const bad of bads) {
      const result = run(bad);
      assert.equal(result.status, 64, JSON.stringify(bad));
      assert.match(result.stderr, /^seaweedfs: /);
      assert.equal(existsSync(join(dir, 'args')), false);
    }
  });
});

/**
 * deploy/compose/seaweedfs/seaweedfs-init.mjs, run with node as in the container, against a
 * stand-in S3 endpoint that records the requests and answers as SeaweedFS does (or refuses the
 * encryption, as an S3 server without bucket encryption, such as Garage, does).
 */
describe('seaweedfs-init.mjs (recording S3 stand-in)', () => {
  type Seen = { method: string; url: string; body: string; authorization: string };
  let server: Server;
  let endpoint = '';
  let seen: Seen[] = [];
  let bucketExists = false;
  let encryption: string | undefined;
  let refuseEncryption = false;
  let dropEncryption = false;

  const read = (request: IncomingMessage) =>
    new Promise<string>((resolve) => {
      let body = '';
      request.on('data', (c) => (body += c)).on('end', () => resolve(body));
    });

  before(async () => {
    server = createServer(async (request, response) => {
      const body = await read(request);
      const url = request.url ?? '';
      seen.push({ method: request.method!, url, body, authorization: String(request.headers.authorization ?? '') });
      const xml = (status: number, text: string) => response.writeHead(status, { 'content-type': 'application/xml' }).end(text);
      const path = url.split('?')[0];
      if (path !== `/${BUCKET}` && path !== `/${BUCKET}/`) return xml(404, '<Error><Code>NoSuchBucket</Code></Error>');
      if (request.method === 'HEAD') return response.writeHead(bucketExists ? 200 : 404).end();
      if (url.includes('encryption')) {
        if (request.method === 'PUT') {
          if (refuseEncryption) return xml(501, '<Error><Code>NotImplemented</Code><Message>not implemented</Message></Error>');
          if (!dropEncryption) encryption = body;
          return response.writeHead(200).end();
        }
        if (!encryption) return xml(404, '<Error><Code>ServerSideEncryptionConfigurationNotFoundError</Code></Error>');
        return xml(200, encryption);
      }
      if (request.method === 'PUT') {
        bucketExists = true;
        return response.writeHead(200).end();
      }
      return xml(400, '<Error><Code>InvalidRequest</Code></Error>');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const reset = (state: { exists?: boolean; refuse?: boolean; drop?: boolean } = {}) => {
    seen = [];
    bucketExists = state.exists ?? false;
    encryption = undefined;
    refuseEncryption = state.refuse ?? false;
    dropEncryption = state.drop ?? false;
  };
  /** Run asynchronously: the stand-in answers from this process's event loop. */
  const run = () =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [join(COMPOSE_DIR, 'seaweedfs/seaweedfs-init.mjs')], {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH, S3_ENDPOINT: endpoint, S3_BUCKET: BUCKET, S3_ADMIN_ACCESS_KEY: 'coffer-root-0a1b2c3d', S3_ADMIN_SECRET_KEY: 'admin-secret-value' },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c) => (stdout += c));
      child.stderr.on('data', (c) => (stderr += c));
      child.on('exit', (status) => resolve({ status, stdout, stderr }));
    });
  const requests = () => seen.map((s) => `${s.method} ${s.url.replace(/=(&|$)/, '$1')}`);

  test('creates the bucket, sets its default encryption to SSE-S3 as the admin identity, and reads it back', async () => {
    reset();
    const result = await run();
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(requests(), [`HEAD /${BUCKET}`, `PUT /${BUCKET}`, `PUT /${BUCKET}?encryption`, `GET /${BUCKET}?encryption`]);
    assert.match(encryption!, /<SSEAlgorithm>AES256<\/SSEAlgorithm>/);
    for (const s of seen) assert.match(s.authorization, /^AWS4-HMAC-SHA256 Credential=coffer-root-0a1b2c3d\//);
    assert.match(result.stdout, /^seaweedfs ready: bucket coffer-bucket \(default encryption AES256\)/);
    assert.doesNotMatch(result.stdout + result.stderr, /admin-secret-value/);
  });

  test('run again on an existing bucket, it only sets and checks the encryption', async () => {
    reset({ exists: true });
    const result = await run();
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(requests(), [`HEAD /${BUCKET}`, `PUT /${BUCKET}?encryption`, `GET /${BUCKET}?encryption`]);
  });

  test('fails (exit 1, one line) when the server refuses bucket encryption or does not keep it', async () => {
    reset({ refuse: true });
    const refused = await run();
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /^seaweedfs-init: the server refused default encryption on coffer-bucket: NotImplemented\n$/);
    reset({ drop: true });
    const dropped = await run();
    assert.equal(dropped.status, 1);
    assert.match(dropped.stderr, /^seaweedfs-init: cannot read the default encryption of coffer-bucket back: /);
  });
});

test('the SeaweedFS files are mounted read-only into their services and the start script is POSIX sh', () => {
  const script = join(COMPOSE_DIR, 'seaweedfs/seaweedfs.sh');
  assert.equal(spawnSync('dash', ['-n', script]).status, 0);
  assert.ok(statSync(script).isFile());
  const override = readFileSync(join(COMPOSE_DIR, 'compose.seaweedfs.yaml'), 'utf8');
  assert.match(override, /- \.\/seaweedfs\/seaweedfs\.sh:\/seaweedfs\.sh:ro/);
  assert.match(override, /- \.\/seaweedfs\/seaweedfs-init\.mjs:\/app\/seaweedfs-init\.mjs:ro/);
});
