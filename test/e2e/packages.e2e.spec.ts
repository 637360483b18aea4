import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { KMS, KmsProvider, orgKeyName } from '@coffer/kms';
import { chunkKey, createStorageDriver, StorageDriver } from '@coffer/storage';
import type { OrgClient } from '../support/client';
import { rawGet, rawPut } from '../support/raw-http';
import { connect } from '../support/test-env';
import { TestWorld } from '../support/world';
import type { Client } from 'pg';

const BUCKET = 'coffer-packages';
const SEGMENT = 1024;
const GIANT = 5 * 1024 ** 3;
const MARKER = 'COFFER-MARKER-7f3a9c-plaintext-must-never-be-stored';
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Content with the marker in every segment, so any stored plaintext segment would show it. */
function markedContent(segments: number): Buffer {
  return Buffer.concat(Array.from({ length: segments }, (_, i) => Buffer.concat([Buffer.from(`${MARKER}:${i}:`), randomBytes(SEGMENT - 80)])));
}

const drivers = [
  { name: 'filesystem driver', s3: false },
  { name: 's3 driver (s3rver over HTTP)', s3: true },
];

for (const driver of drivers) {
  describe(`KB packages, ${driver.name}`, () => {
    let world: TestWorld;
    let store: StorageDriver;
    let orgA: OrgClient;
    let orgB: OrgClient;

    before(async () => {
      world = await TestWorld.start({
        ...(driver.s3 && { s3: [BUCKET], storageBucket: BUCKET }),
        config: { PACKAGE_SEGMENT_BYTES: String(SEGMENT), PACKAGE_CHUNK_BYTES: String(4 * SEGMENT), PACKAGE_MAX_BYTES: String(256 * 1024) },
        orgs: ['org-a', 'org-b'],
      });
      store = createStorageDriver(world.config);
      [orgA, orgB] = [world.org('org-a'), world.org('org-b')];
    });

    after(() => world?.stop());

    const upload = (org: OrgClient, name: string, body: Buffer | Buffer[], type = 'application/octet-stream') =>
      rawPut(org.url(`packages/${name}`), { ...org.headers(), 'content-type': type }, body);
    const download = (org: OrgClient, name: string, version: number, headers: Record<string, string> = {}) =>
      rawGet(org.url(`packages/${name}/versions/${version}/content`), { ...org.headers(), ...headers });

    /** Every stored object's raw bytes, read behind the API's back. */
    function rawObjects(): { key: string; body: Buffer }[] {
      if (driver.s3) return world.s3.objects(BUCKET);
      const storageDir = world.config.STORAGE_DIR;
      const walk = (dir: string): string[] =>
        readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? walk(join(dir, n)) : [join(dir, n)]));
      return walk(storageDir).map((file) => ({ key: file.slice(storageDir.length + 1), body: readFileSync(file) }));
    }

    async function objectIdOf(org: OrgClient, name: string, version: number): Promise<string> {
      const res = await org.get(`packages/${name}`);
      return res.body.versions.find((v: { version: number }) => v.version === version).id;
    }

    async function storedBytes(key: string): Promise<Buffer> {
      const parts: Buffer[] = [];
      for await (const part of await store.get(key)) parts.push(part as Buffer);
      return Buffer.concat(parts);
    }

    test('an upload becomes version 1, then 2; list, metadata and content round-trip (any content type, chunked too)', async () => {
      const first = Buffer.from(JSON.stringify({ hello: 'world', n: 1 }));
      const created = await upload(orgA, 'handbook', first, 'application/json');
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.equal(created.body.version, 1);
      assert.equal(created.body.size, first.length);
      assert.equal(created.body.sha256, sha256(first));
      assert.equal(created.body.contentType, 'application/json');
      assert.equal(created.body.kmsKeyVersion, 1);
      assert.match(created.body.createdBy, /^user:/);

      const second = randomBytes(10 * SEGMENT + 17);
      const pieces = Array.from({ length: Math.ceil(second.length / 3000) }, (_, i) => second.subarray(i * 3000, (i + 1) * 3000));
      const chunked = await upload(orgA, 'handbook', pieces, 'application/pdf'); // no Content-Length
      assert.equal(chunked.status, 201, JSON.stringify(chunked.body));
      assert.equal(chunked.body.version, 2);

      const empty = await upload(orgA, 'empty', Buffer.alloc(0));
      assert.equal(empty.status, 201);
      assert.equal(empty.body.size, 0);

      const listed = await orgA.get('packages');
      assert.deepEqual(
        listed.body.packages.map((p: { name: string; latestVersion: number; versions: number }) => [p.name, p.latestVersion, p.versions]),
        [['empty', 1, 1], ['handbook', 2, 2]],
      );
      const meta = await orgA.get('packages/handbook');
      assert.deepEqual(meta.body.versions.map((v: { version: number; size: number }) => [v.version, v.size]), [[1, first.length], [2, second.length]]);

      const one = await download(orgA, 'handbook', 1);
      assert.equal(one.status, 200);
      assert.deepEqual(one.body, first);
      assert.equal(one.headers['content-type'], 'application/json');
      const two = await download(orgA, 'handbook', 2);
      assert.equal(two.headers['content-length'], String(second.length));
      assert.equal(sha256(two.body), sha256(second));
      assert.deepEqual((await download(orgA, 'empty', 1)).body, Buffer.alloc(0));
      assert.equal((await download(orgA, 'handbook', 3)).status, 404);
      assert.equal((await upload(orgA, '-bad', first)).status, 400);
    });

    test('encryption at rest: no stored object contains the marker, and every key is under orgs/<orgId>/', async () => {
      const content = markedContent(12);
      assert.equal((await upload(orgA, 'marked', content)).status, 201);
      const objects = rawObjects();
      assert.ok(objects.length >= 4, 'chunks and a manifest were stored');
      for (const { key, body } of objects) {
        assert.ok(!body.includes(MARKER), `${key} holds plaintext`);
        assert.ok(!body.includes(content.subarray(100, 140)), `${key} holds plaintext`);
        assert.match(key, /^orgs\/[0-9a-f-]+\/packages\/[0-9a-f]+\/(chunk-\d{8}|manifest)$/);
      }
      assert.ok(objects.some(({ key }) => key.startsWith(`orgs/${orgA.id}/`)));
      assert.deepEqual((await download(orgA, 'marked', 1)).body, content);
    });

    test('Range: one range answers 206 with exactly those bytes; outside the content 416', async () => {
      const content = randomBytes(9 * SEGMENT + 100);
      assert.equal((await upload(orgA, 'ranged', content)).status, 201);
      for (const [header, start, end] of [
        ['bytes=0-0', 0, 0],
        ['bytes=1000-5000', 1000, 5000],
        ['bytes=4096-8191', 4096, 8191],
        [`bytes=${content.length - 10}-`, content.length - 10, content.length - 1],
        ['bytes=-300', content.length - 300, content.length - 1],
        [`bytes=9000-99999999`, 9000, content.length - 1],
      ] as const) {
        const res = await download(orgA, 'ranged', 1, { range: header });
        assert.equal(res.status, 206, header);
        assert.equal(res.headers['content-range'], `bytes ${start}-${end}/${content.length}`);
        assert.equal(res.headers['cache-control'], 'no-store', 'decrypted content is never cached');
        assert.deepEqual(res.body, content.subarray(start, end + 1), header);
      }
      const outside = await download(orgA, 'ranged', 1, { range: `bytes=${content.length}-` });
      assert.equal(outside.status, 416);
      assert.equal(outside.headers['content-range'], `bytes */${content.length}`);
      assert.equal(JSON.parse(outside.body.toString()).error.code, 'range_not_satisfiable');
      const ignored = await download(orgA, 'ranged', 1, { range: 'bytes=1-2,5-6' });
      assert.equal(ignored.status, 200, 'several ranges are not supported: the whole content');
    });

    test('If-Range: the range only while the validator is the current strong ETag; otherwise the whole content (200)', async () => {
      const whole = await download(orgA, 'ranged', 1);
      const etag = whole.headers.etag as string;
      assert.match(etag, /^"[0-9a-f]{64}"$/);
      const matching = await download(orgA, 'ranged', 1, { range: 'bytes=0-9', 'if-range': etag });
      assert.deepEqual([matching.status, matching.body.length], [206, 10]);
      for (const validator of [`W/${etag}`, '"0000"', 'Tue, 01 Dec 2026 00:00:00 GMT']) {
        const stale = await download(orgA, 'ranged', 1, { range: 'bytes=0-9', 'if-range': validator });
        assert.deepEqual([stale.status, stale.body.length, stale.headers['content-range']], [200, whole.body.length, undefined], validator);
      }
    });

    describe('integrity: damage to stored chunks fails the download at the damaged segment', () => {
      const content = markedContent(16); // 16 segments, 4 chunks of 4 segments
      let version = 0;
      let ref: { orgId: string; objectId: string };

      /** A fresh copy of the package, damaged by `damage`; the download and what was released. */
      async function damaged(damage: () => Promise<void>) {
        const created = await upload(orgA, 'fragile', content);
        assert.equal(created.status, 201);
        version = created.body.version;
        ref = { orgId: orgA.id, objectId: await objectIdOf(orgA, 'fragile', version) };
        await damage();
        return download(orgA, 'fragile', version);
      }

      /** No byte past the last intact segment before `badSegment` may reach the client. */
      function assertStoppedAt(res: Awaited<ReturnType<typeof download>>, badSegment: number) {
        if (badSegment === 0) {
          assert.equal(res.status, 500);
          assert.equal(JSON.parse(res.body.toString()).error.code, 'package_integrity_failed');
          return;
        }
        assert.equal(res.status, 200);
        assert.equal(res.complete, false, 'the response is aborted, not ended');
        assert.ok(res.body.length <= badSegment * SEGMENT, `released ${res.body.length} bytes, segment ${badSegment} starts at ${badSegment * SEGMENT}`);
        assert.deepEqual(res.body, content.subarray(0, res.body.length), 'what was sent is authenticated plaintext');
      }

      test('one flipped byte in a middle chunk', async () => {
        const res = await damaged(async () => {
          const bytes = await storedBytes(chunkKey(ref, 2));
          bytes[(SEGMENT + 16) + 3] ^= 0x01; // segment 9
          await store.put(chunkKey(ref, 2), bytes);
        });
        assertStoppedAt(res, 9);
      });

      test('one flipped byte in the first segment: an error status, no content', async () => {
        const res = await damaged(async () => {
          const bytes = await storedBytes(chunkKey(ref, 0));
          bytes[10] ^= 0x80;
          await store.put(chunkKey(ref, 0), bytes);
        });
        assertStoppedAt(res, 0);
      });

      test('a truncated chunk', async () => {
        const res = await damaged(async () => {
          const bytes = await storedBytes(chunkKey(ref, 1));
          await store.put(chunkKey(ref, 1), bytes.subarray(0, bytes.length - 100));
        });
        assertStoppedAt(res, 7);
      });

      test('the last chunk dropped', async () => {
        const res = await damaged(() => store.delete([chunkKey(ref, 3)]));
        assertStoppedAt(res, 12);
      });

      test('two chunks swapped', async () => {
        const res = await damaged(async () => {
          const [one, two] = [await storedBytes(chunkKey(ref, 1)), await storedBytes(chunkKey(ref, 2))];
          await store.put(chunkKey(ref, 1), two);
          await store.put(chunkKey(ref, 2), one);
        });
        assertStoppedAt(res, 4);
      });

      test('a Range read inside a damaged chunk fails too', async () => {
        const created = await upload(orgA, 'fragile-range', content);
        const id = await objectIdOf(orgA, 'fragile-range', created.body.version);
        const key = chunkKey({ orgId: orgA.id, objectId: id }, 1);
        const bytes = await storedBytes(key);
        bytes[2 * (SEGMENT + 16) + 5] ^= 0x01; // segment 6
        await store.put(key, bytes);
        const res = await download(orgA, 'fragile-range', created.body.version, { range: `bytes=${6 * SEGMENT}-${6 * SEGMENT + 10}` });
        assert.equal(res.status, 500);
        assert.equal(JSON.parse(res.body.toString()).error.code, 'package_integrity_failed');
      });
    });

    test("isolation: org A's chunk copied under org B's object does not decrypt; A cannot reach B's packages or unwrap B's keys", async () => {
      const a = markedContent(4);
      const b = randomBytes(4 * SEGMENT);
      assert.equal((await upload(orgA, 'shared-name', a)).status, 201);
      assert.equal((await upload(orgB, 'shared-name', b)).status, 201);
      const refA = { orgId: orgA.id, objectId: await objectIdOf(orgA, 'shared-name', 1) };
      const refB = { orgId: orgB.id, objectId: await objectIdOf(orgB, 'shared-name', 1) };
      await store.put(chunkKey(refB, 0), await storedBytes(chunkKey(refA, 0)));
      const res = await download(orgB, 'shared-name', 1);
      assert.equal(res.status, 500);
      assert.equal(JSON.parse(res.body.toString()).error.code, 'package_integrity_failed');
      assert.ok(!res.body.includes(MARKER));

      const crossed = await orgB.as(orgA).get('packages/shared-name/versions/1/content');
      assert.equal(crossed.status, 404);
      const owner = await connect(world.config.DATABASE_OWNER_URL, `${world.config.ORG_DATABASE_PREFIX}${orgB.id}`);
      try {
        const { rows } = await owner.query('SELECT wrapped_dek FROM package_versions WHERE id = $1', [refB.objectId]);
        const kms = world.app.get<KmsProvider>(KMS);
        await assert.rejects(kms.unwrap(orgKeyName(orgA.id), rows[0].wrapped_dek));
      } finally {
        await owner.end();
      }
    });

    test('roles: members upload and read, security officers only read, only admins delete; downloads are audited', async () => {
      const member = await world.addUser(orgA, 'member');
      const officer = await world.addUser(orgA, 'security_officer');
      const body = randomBytes(100);
      assert.equal((await upload(orgA.as(member), 'by-member', body)).status, 201);
      assert.equal((await upload(orgA.as(officer), 'by-officer', body)).status, 403);
      const read = await download(orgA.as(officer), 'by-member', 1);
      assert.deepEqual(read.body, body);
      assert.equal((await orgA.as(member).delete('packages/by-member/versions/1')).status, 403);

      const logs = await orgA.get('audit-logs?action=package.content_read');
      const entry = logs.body.entries.find((e: { actor: { id: string } }) => e.actor.id === `user:${officer.userId}`);
      assert.ok(entry, 'the download is in the audit log');
      assert.equal(entry.target.name, 'by-member');
      const created = await orgA.get('audit-logs?action=package.version_created');
      assert.ok(created.body.entries.some((e: { outcome: string; target: { name: string } }) => e.outcome === 'failure' && e.target.name === 'by-officer'));
    });

    test('deleting a version, then the package: gone from the API; the name starts again at 1', async () => {
      for (let i = 0; i < 2; i++) assert.equal((await upload(orgA, 'doomed', randomBytes(50))).status, 201);
      assert.equal((await orgA.delete('packages/doomed/versions/1')).status, 200);
      assert.equal((await download(orgA, 'doomed', 1)).status, 404);
      assert.equal((await download(orgA, 'doomed', 2)).status, 200);
      assert.equal((await orgA.delete('packages/doomed/versions/1')).status, 404);
      const removed = await orgA.delete('packages/doomed');
      assert.equal(removed.status, 200);
      assert.equal(removed.body.versionsDeleted, 1);
      assert.equal((await orgA.get('packages/doomed')).status, 404);
      assert.equal((await download(orgA, 'doomed', 2)).status, 404);
      assert.equal((await upload(orgA, 'doomed', randomBytes(50))).body.version, 1);
    });

    describe('failed uploads never become visible, and the worker collects their chunks', () => {
      let orgDb: Client;
      const STALE_SECONDS = 2;
      before(async () => {
        orgDb = await connect(world.config.DATABASE_APP_URL, `${world.config.ORG_DATABASE_PREFIX}${orgB.id}`);
        await world.startWorker({ PACKAGE_SWEEP_CRON: '* * * * * *', PACKAGE_UPLOAD_STALE_SECONDS: STALE_SECONDS });
      });
      after(async () => {
        await world.stopWorker();
        await orgDb?.end();
      });

      const upload = async (name: string) => (await orgDb.query(`SELECT id, state, purged_at FROM package_versions WHERE package_name = $1`, [name])).rows[0];
      async function waitFor(check: () => Promise<boolean>, what: string) {
        const deadline = Date.now() + 15_000;
        while (!(await check())) {
          if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      }

      const listedNames = async () => (await orgB.get('packages')).body.packages.map((p: { name: string }) => p.name);

      test('a refused upload is answered at once and its connection closed, its body unread', async () => {
        const res = await new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
          const req = httpRequest(orgB.url('packages/anonymous'), { method: 'PUT', headers: { 'content-length': String(GIANT) } }, (response) => {
            response.resume();
            resolve({ status: response.statusCode!, connection: response.headers.connection });
            req.destroy();
          });
          req.on('error', reject);
          req.write(Buffer.alloc(1024));
        });
        assert.deepEqual(res, { status: 401, connection: 'close' });
      });

      test('over the limit: 413 package_too_large, declared or found while streaming', async () => {
        const declared = await new Promise<{ status: number; body: string; connection?: string }>((resolve, reject) => {
          const req = httpRequest(orgB.url('packages/huge'), { method: 'PUT', headers: { ...orgB.headers(), 'content-length': String(300 * 1024) } }, (res) => {
            let text = '';
            res.on('data', (d) => (text += d));
            res.on('end', () => {
              resolve({ status: res.statusCode!, body: text, connection: res.headers.connection });
              req.destroy();
            });
          });
          req.on('error', reject);
          req.write(Buffer.alloc(1024)); // the answer comes before the rest of the body
        });
        assert.equal(declared.status, 413);
        assert.equal(JSON.parse(declared.body).error.code, 'package_too_large');
        assert.equal(declared.connection, 'close', 'the rest of the body is not read');

        const streamed = await new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = httpRequest(orgB.url('packages/huge'), { method: 'PUT', headers: orgB.headers() }, (res) => {
            let text = '';
            res.on('data', (d) => (text += d));
            res.on('end', () => resolve({ status: res.statusCode!, body: text }));
          });
          req.on('error', () => undefined); // the server may close while we still write
          let sent = 0;
          const pump = () => {
            while (sent < 300 * 1024 && req.write(randomBytes(8 * 1024))) sent += 8 * 1024;
            if (sent < 300 * 1024) req.once('drain', () => ((sent += 8 * 1024), pump()));
            else req.end();
          };
          pump();
          setTimeout(() => reject(new Error('no answer')), 20_000).unref();
        });
        assert.equal(streamed.status, 413);
        assert.equal(JSON.parse(streamed.body).error.code, 'package_too_large');
        assert.ok(!(await listedNames()).includes('huge'));
      });

      test('a client that disconnects half-way leaves nothing visible; the sweep removes its chunks', async () => {
        let leftover: string[] = [];
        await new Promise<void>((resolve) => {
          const req = httpRequest(orgB.url('packages/cut'), { method: 'PUT', headers: { ...orgB.headers(), 'content-length': String(100 * 1024) } });
          req.on('error', () => resolve());
          req.write(randomBytes(40 * 1024), () =>
            setTimeout(async () => {
              const { id } = await upload('cut');
              leftover = rawObjects().map((o) => o.key).filter((key) => key.includes(`/${id}/`));
              req.destroy();
            }, 300),
          );
        });
        assert.ok(leftover.length > 0, 'chunks were stored before the client went away');
        await waitFor(async () => (await upload('cut'))?.state === 'deleted', 'the upload is abandoned');
        assert.ok(!(await listedNames()).includes('cut'));
        assert.equal((await orgB.get('packages/cut')).status, 404);

        const { id } = await upload('cut');
        await waitFor(async () => !!(await upload('cut')).purged_at, 'the sweep purged it');
        assert.deepEqual(rawObjects().filter((o) => o.key.includes(`/${id}/`)), []);
      });

      test('an upload idle for PACKAGE_UPLOAD_STALE_SECONDS (a crashed writer) is collected, and can no longer commit', async () => {
        const url = orgB.url('packages/stalled');
        const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = httpRequest(url, { method: 'PUT', headers: { ...orgB.headers(), 'content-length': String(20 * 1024) } }, (res) => {
            let text = '';
            res.on('data', (d) => (text += d));
            res.on('end', () => resolve({ status: res.statusCode!, body: text }));
          });
          req.on('error', reject);
          req.write(randomBytes(10 * 1024));
          // The rest comes only after the sweep has taken the upload for dead.
          waitFor(async () => (await upload('stalled'))?.state === 'deleted', 'the sweep claims the stale upload').then(
            () => req.end(randomBytes(10 * 1024)),
            reject,
          );
        });
        const res = await answer;
        assert.equal(res.status, 400);
        assert.equal(JSON.parse(res.body).error.code, 'bad_request');
        assert.ok(!(await listedNames()).includes('stalled'));
        const { id } = await upload('stalled');
        // Chunks written after the claim are collected by a later sweep.
        await waitFor(async () => !!(await upload('stalled')).purged_at && !rawObjects().some((o) => o.key.includes(`/${id}/`)), 'everything is collected');
      });
    });
  });
}
