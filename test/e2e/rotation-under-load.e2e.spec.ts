import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { stopProcess } from '../support/api-process';
import type { OrgClient } from '../support/client';
import { rawGet, rawPut } from '../support/raw-http';
import { connectToOrgAsOwner } from '../support/test-env';
import { TestWorld } from '../support/world';

const ROTATIONS = 10;
const SEGMENT = 1024;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

interface Uploaded {
  name: string;
  version: number;
  sha256: string;
  kmsKeyVersion: number;
}

interface Written {
  userId: string;
  email: string;
  /** A member's API key, issued during the load: its hash is a sealed field too. */
  token?: string;
}

/** A request that did not get the status it should have, with what it got instead. */
interface Failure {
  what: string;
  status: number;
  body: string;
}

const providers = [
  { name: 'local KMS', vault: false },
  { name: 'Vault transit double over HTTP', vault: true },
];

for (const provider of providers) {
  describe(`ten key rotations under concurrent uploads, downloads and field writes (API and worker on PostgreSQL and Redis, ${provider.name})`, () => {
    let world: TestWorld;
    let org: OrgClient;
    const uploads: Uploaded[] = [];
    const written: Written[] = [];
    const failures: Failure[] = [];
    const rotatedAt: string[] = [];
    let requests = 0;

    before(async () => {
      world = await TestWorld.start({
        vault: provider.vault,
        config: {
          // Small segments and chunks: every upload is several chunk objects, so uploads are in
          // flight while keys rotate.
          PACKAGE_SEGMENT_BYTES: String(SEGMENT),
          PACKAGE_CHUNK_BYTES: String(4 * SEGMENT),
          // Several batches per rewrap.
          KEY_REWRAP_BATCH_SIZE: '7',
        },
        orgs: ['acme'],
        worker: true,
      });
      org = world.org('acme');
    });

    after(() => world?.stop());

    const keys = () => org.get('keys');
    const status = () => org.get('encryption-status');

    /** Counts the request; a status other than `expected` is recorded as a failure. */
    const expect = (what: string, expected: number, res: { status: number; body: unknown; text?: string }): boolean => {
      requests++;
      if (res.status === expected) return true;
      failures.push({ what, status: res.status, body: res.text ?? JSON.stringify(res.body) });
      return false;
    };

    /** Uploads of 0 to 40 segments, half with Content-Length, half chunked in pieces. */
    async function uploadOne(n: number): Promise<void> {
      const content = randomBytes(randomInt(0, 40 * SEGMENT));
      const name = `pkg-${n % 7}`;
      const body = n % 2 ? content : [content.subarray(0, content.length >> 1), content.subarray(content.length >> 1)];
      const res = await rawPut(org.url(`packages/${name}`), { ...org.headers(), 'content-type': 'application/octet-stream' }, body);
      if (expect(`upload ${name}`, 201, res)) uploads.push({ name, version: res.body.version, sha256: sha256(content), kmsKeyVersion: res.body.kmsKeyVersion });
    }

    /** A download of an earlier upload, checked byte for byte against what was sent. */
    async function downloadOne(): Promise<void> {
      if (!uploads.length) return new Promise((resolve) => setTimeout(resolve, 20));
      const pick = uploads[randomInt(uploads.length)];
      const res = await rawGet(org.url(`packages/${pick.name}/versions/${pick.version}/content`), org.headers());
      if (expect(`download ${pick.name} v${pick.version}`, 200, { status: res.status, body: res.body.toString() }) && (!res.complete || sha256(res.body) !== pick.sha256)) {
        failures.push({ what: `download ${pick.name} v${pick.version}`, status: res.status, body: 'content differs from the upload' });
      }
    }

    /** A user (sealed email, blind index) and, every other time, an API key for them (sealed hash). */
    async function writeFields(n: number): Promise<void> {
      const email = `user-${n}-${randomBytes(4).toString('hex')}@${org.slug}.example`;
      const user = await org.post('users').send({ email, displayName: `User ${n}`, role: 'member' });
      if (!expect('create user', 201, user)) return;
      const entry: Written = { userId: user.body.user.id, email };
      written.push(entry);
      if (n % 2) return;
      const key = await org.post(`users/${entry.userId}/api-keys`).send({ name: `key ${n}` });
      if (expect('issue api key', 201, key)) entry.token = key.body.apiKey.secret;
    }

    async function readStatus(): Promise<void> {
      expect('encryption status', 200, await status());
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    test('no request fails while the key rotates ten times, and writes land under many key versions', async () => {
      const before = await status();
      assert.equal(before.status, 200);
      assert.equal(before.body.key_rotation.last_rotated, null);

      let running = true;
      const loop = (work: () => Promise<void>) =>
        (async () => {
          while (running) await work().catch((error: Error) => failures.push({ what: 'request', status: 0, body: error.message }));
        })();
      let [uploadCount, writeCount] = [0, 0];
      const load = [
        loop(() => uploadOne(uploadCount++)),
        loop(() => uploadOne(uploadCount++)),
        loop(() => uploadOne(uploadCount++)),
        loop(downloadOne),
        loop(downloadOne),
        loop(() => writeFields(writeCount++)),
        loop(() => writeFields(writeCount++)),
        loop(readStatus),
      ];
      try {
        for (let i = 0; i < ROTATIONS; i++) {
          // Each rotation comes after writes have landed since the previous one.
          const [uploadsBefore, writtenBefore] = [uploads.length, written.length];
          const deadline = Date.now() + 30_000;
          while ((uploads.length < uploadsBefore + 3 || written.length < writtenBefore + 2) && !failures.length && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 25));
          }
          const res = await org.post('keys/rotate');
          if (expect(`rotation ${i + 1}`, 200, res)) rotatedAt.push(res.body.rotatedAt);
        }
        // Writes keep going past the last rotation, across its rewrap.
        const uploadsBefore = uploads.length;
        while (uploads.length < uploadsBefore + 3 && !failures.length) await new Promise((resolve) => setTimeout(resolve, 25));
      } finally {
        running = false;
        await Promise.all(load);
      }

      assert.deepEqual(failures, [], `${failures.length} of ${requests} requests failed`);
      assert.equal(rotatedAt.length, ROTATIONS);
      const versionsWritten = new Set(uploads.map((u) => u.kmsKeyVersion));
      assert.ok(versionsWritten.size >= ROTATIONS / 2, `uploads landed under key versions ${[...versionsWritten].sort((a, b) => a - b)}`);
      assert.ok(uploads.length >= 3 * ROTATIONS && written.length >= 2 * ROTATIONS, `${uploads.length} uploads, ${written.length} users`);
    });

    test("after the worker's rewrap every stored data key is on the latest version, and the status shows the rotation", async () => {
      const deadline = Date.now() + 60_000;
      let shown = (await keys()).body;
      while (!(shown.latestVersion === ROTATIONS + 1 && shown.rewrap.remaining === 0 && shown.rewrap.completedAt)) {
        if (Date.now() > deadline) throw new Error(`the rewrap did not finish: ${JSON.stringify(shown)}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
        shown = (await keys()).body;
      }
      const latest = ROTATIONS + 1;
      const onOld = shown.versions.filter((v: { version: number; wrappedDataKeys: number }) => v.version < latest && v.wrappedDataKeys > 0);
      assert.deepEqual(onOld, [], 'no data key left on an old version');
      const onLatest = shown.versions.find((v: { version: number }) => v.version === latest).wrappedDataKeys;
      assert.ok(onLatest >= uploads.length + 2, `${onLatest} data keys on version ${latest}: every upload's, the field and index keys`);

      // Behind the API's back: every wrapped column of the org database names the latest version.
      const owner = await connectToOrgAsOwner(world.env, org.id);
      try {
        const { rows } = await owner.query(
          `SELECT wrapped_dek AS wrapped, kms_key_version AS version FROM package_versions
           UNION ALL SELECT wrapped, kms_key_version FROM field_keys`,
        );
        assert.ok(rows.length >= uploads.length + 2);
        const prefix = `${provider.vault ? 'vault' : 'local'}:v${latest}:`;
        assert.deepEqual(rows.filter((r) => !r.wrapped.startsWith(prefix) || r.version !== latest), []);
      } finally {
        await owner.end();
      }

      // Measurements are refreshed every 2 s in the background: read until one postdates the checks above.
      const since = Date.now();
      let res = await status();
      for (const deadline = since + 10_000; Date.parse(res.body.details?.measuredAt) <= since && Date.now() < deadline; ) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        res = await status();
      }
      assert.equal(res.status, 200);
      assert.equal(Date.parse(res.body.key_rotation.last_rotated), Date.parse(rotatedAt[rotatedAt.length - 1]), 'last_rotated moved to the last rotation');
      assert.equal(res.body.db_encryption, 'active');
      assert.equal(res.body.storage_encryption, 'AES-256-KMS');
      assert.equal(res.body.details.key.latestVersion, latest);
      assert.equal(res.body.details.key.rewrap.remaining, 0);
    });

    test('every object and field reads back through an API process that starts with nothing cached', async () => {
      const fresh = await world.startApiProcess();
      try {
        const get = (path: string, token = org.adminToken) => fetch(org.at(fresh.url).url(path), { headers: org.as(token).headers() });
        for (const u of uploads) {
          const res = await get(`packages/${u.name}/versions/${u.version}/content`);
          assert.equal(res.status, 200, `${u.name} v${u.version}`);
          assert.equal(sha256(Buffer.from(await res.arrayBuffer())), u.sha256, `${u.name} v${u.version} is byte-identical`);
        }
        for (const w of written) {
          const res = await get(`users/${w.userId}`);
          assert.equal(res.status, 200);
          assert.equal(((await res.json()) as { user: { email: string } }).user.email, w.email);
        }
        const tokens = written.filter((w) => w.token);
        assert.ok(tokens.length >= ROTATIONS);
        for (const w of tokens) assert.equal((await get('packages', w.token)).status, 200, "a key issued during the rotations authenticates");
      } finally {
        await stopProcess(fresh.child);
      }
    });
  });
}
