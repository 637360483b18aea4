import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign as edSign } from 'node:crypto';
import { Client } from 'pg';
import {
  anchorKey,
  AuditAnchorStore,
  AuditChain,
  AuditRepository,
  AuditService,
  checkpointData,
  checkpointKeyName,
  entryHash,
  fromRow,
  genesisHash,
} from '@coffer/audit';
import { DatabaseService, SchemaService } from '@coffer/database';
import { AppError } from '@coffer/http';
import { createLogger } from '@coffer/logging';
import { OrgProvisioner } from '@coffer/orgs';
import { S3StorageDriver } from '@coffer/storage';
import { Actor, OrgRef } from '@coffer/tenancy';
import { testProvisioner, TestProvisioner } from '../support/provisioner';
import { startS3, TestS3 } from '../support/s3-server';
import { connect, createTestEnv, TestEnv } from '../support/test-env';

const actor: Actor = { id: 'user:test', kind: 'user' };
const BUCKET = 'coffer-storage';

describe('audit anchors outside PostgreSQL: the database owner cannot rewrite the log unnoticed (PostgreSQL, s3rver as the storage backend, local KMS)', () => {
  let env: TestEnv;
  let s3: TestS3;
  let provisioning: TestProvisioner;
  let provisioner: OrgProvisioner;
  let db: DatabaseService;
  /** As the API and the worker build it: anchors in the storage backend. */
  let service: AuditService;
  /** What verify was before anchors: the database's own checkpoints only. */
  let databaseOnly: AuditService;
  let counter = 0;

  before(async () => {
    env = await createTestEnv();
    await new SchemaService(env.config).migrateControlPlane();
    s3 = await startS3([BUCKET]);
    provisioning = testProvisioner(env);
    ({ provisioner, db } = provisioning);
    const storage = new S3StorageDriver({ endpoint: s3.endpoint, bucket: BUCKET, accessKey: s3.accessKeyId, secretKey: s3.secretAccessKey, region: 'us-east-1' });
    await storage.ready();
    const repository = new AuditRepository(db);
    service = new AuditService(repository, createLogger('silent'), provisioning.kms, new AuditAnchorStore(storage, {}));
    databaseOnly = new AuditService(repository, createLogger('silent'), provisioning.kms);
  });

  after(async () => {
    await provisioning?.close();
    await s3?.stop();
    await env?.destroy();
  });

  /** A fresh org with 7 entries, checkpoints at 4 and 7 (anchored), and the owner's connection. */
  async function anchoredOrg(): Promise<{ org: OrgRef; chain: AuditChain; owner: Client }> {
    const { org } = await provisioner.register(`anchors-${++counter}`, `Anchors ${counter}`);
    await provisioner.provision(org);
    const chain = service.chain(org);
    const head = async () => Number((await chain.pool().query('SELECT coalesce(max(seq), 0) AS seq FROM audit_log')).rows[0].seq);
    // Provisioning may already have logged entries; the chain is brought to exactly 4, then 7.
    while ((await head()) < 4) await service.record(chain, actor, [{ action: 'note.added', n: await head() }]);
    assert.equal(await head(), 4);
    assert.equal(await service.checkpoint(chain), 4);
    for (let i = 0; i < 3; i++) await service.record(chain, actor, [{ action: 'note.added', n: 5 + i }]);
    assert.equal(await service.checkpoint(chain), 7);
    const owner = await connect(env.config.DATABASE_OWNER_URL, org.databaseName);
    return { org, chain, owner };
  }

  const anchorAt = (org: OrgRef, seq: number) => `storage:${anchorKey(org.id, seq)}`;

  async function asOwner(owner: Client, tamper: () => Promise<unknown>) {
    await owner.query('ALTER TABLE audit_log DISABLE TRIGGER USER; ALTER TABLE audit_checkpoints DISABLE TRIGGER USER');
    await tamper();
    await owner.query('ALTER TABLE audit_log ENABLE TRIGGER USER; ALTER TABLE audit_checkpoints ENABLE TRIGGER USER');
  }

  /** What an attacker who knows the hash scheme does: recompute every hash from `seq` on (from genesis for 1). */
  async function rehashFrom(owner: Client, chainId: string, seq: number) {
    const { rows } = await owner.query('SELECT * FROM audit_log WHERE seq >= $1 ORDER BY seq', [seq]);
    let prev = seq === 1 ? genesisHash(chainId) : ((await owner.query('SELECT hash FROM audit_log WHERE seq = $1', [seq - 1])).rows[0].hash as Buffer);
    for (const row of rows) {
      const hash = entryHash(prev, fromRow(row));
      await owner.query('UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE seq = $3', [prev, hash, row.seq]);
      prev = hash;
    }
  }

  test('every checkpoint is written to the storage backend as a signed tree head, and the database row carries the same signature', async () => {
    const { org, chain, owner } = await anchoredOrg();
    try {
      const keys = s3.objects(BUCKET).map((o) => o.key).filter((k) => k.startsWith(`anchors/${org.id}/`)).sort();
      assert.deepEqual(keys, [anchorKey(org.id, 4), anchorKey(org.id, 7)]);
      const anchor = JSON.parse(s3.objects(BUCKET).find((o) => o.key === anchorKey(org.id, 7))!.body.toString('utf8'));
      const row = (await owner.query('SELECT * FROM audit_checkpoints WHERE seq = 7')).rows[0];
      assert.deepEqual(
        { format: anchor.format, chain: anchor.chain, seq: anchor.seq, hash: anchor.hash, keyName: anchor.keyName, keyVersion: anchor.keyVersion, signature: anchor.signature },
        { format: 'coffer-audit-anchor/1', chain: org.id, seq: 7, hash: row.hash.toString('hex'), keyName: checkpointKeyName(org.id), keyVersion: 1, signature: row.signature },
      );
      assert.ok(!Number.isNaN(Date.parse(anchor.signedAt)));
      assert.deepEqual(await service.verify(chain), { valid: true, checkedThrough: 7 });
    } finally {
      await owner.end();
    }
  });

  test('deleting the last three entries with the checkpoint rows that cover them is reported at 5, by the storage anchor at 7', async () => {
    const { org, chain, owner } = await anchoredOrg();
    try {
      await asOwner(owner, () => owner.query('DELETE FROM audit_log WHERE seq > 4; DELETE FROM audit_checkpoints WHERE seq > 4'));
      assert.deepEqual(await databaseOnly.verify(chain), { valid: true, checkedThrough: 4 }, 'the database alone cannot tell');
      const result = await service.verify(chain);
      assert.deepEqual(
        { valid: result.valid, firstBadSequence: result.firstBadSequence, checkedThrough: result.checkedThrough, anchor: result.anchor },
        { valid: false, firstBadSequence: 5, checkedThrough: 4, anchor: anchorAt(org, 7) },
      );
      assert.match(result.reason!, /checkpoint 7 signed entries that are no longer there/);
    } finally {
      await owner.end();
    }
  });

  test("editing one entry's body and rehashing the rest (checkpoint rows deleted) is reported at 4, by the storage anchor at 4", async () => {
    const { org, chain, owner } = await anchoredOrg();
    try {
      await asOwner(owner, async () => {
        await owner.query(`UPDATE audit_log SET body = '{"n":"forged"}' WHERE seq = 2`);
        await rehashFrom(owner, org.id, 2);
        await owner.query('DELETE FROM audit_checkpoints');
      });
      assert.deepEqual(await databaseOnly.verify(chain), { valid: true, checkedThrough: 7 }, 'the database alone cannot tell');
      const result = await service.verify(chain);
      assert.deepEqual(
        { valid: result.valid, firstBadSequence: result.firstBadSequence, anchor: result.anchor },
        { valid: false, firstBadSequence: 4, anchor: anchorAt(org, 4) },
      );
      assert.match(result.reason!, /entry 4 does not match its signed checkpoint/);
    } finally {
      await owner.end();
    }
  });

  test('rebuilding the whole chain from genesis, checkpoint rows re-signed with a forged key, is reported at 4, by the storage anchor at 4', async () => {
    const { org, chain, owner } = await anchoredOrg();
    try {
      const forged = generateKeyPairSync('ed25519').privateKey;
      await asOwner(owner, async () => {
        await owner.query(`UPDATE audit_log SET action = 'forged.' || action`);
        await rehashFrom(owner, org.id, 1);
        await owner.query('DELETE FROM audit_checkpoints');
        for (const seq of [4, 7]) {
          const { hash } = (await owner.query('SELECT hash FROM audit_log WHERE seq = $1', [seq])).rows[0];
          const signature = `local:v1:${edSign(null, checkpointData(org.id, seq, hash), forged).toString('base64')}`;
          await owner.query('INSERT INTO audit_checkpoints (seq, hash, key_name, signature) VALUES ($1, $2, $3, $4)', [seq, hash, checkpointKeyName(org.id), signature]);
        }
      });
      const result = await service.verify(chain);
      assert.deepEqual(
        { valid: result.valid, firstBadSequence: result.firstBadSequence, anchor: result.anchor },
        { valid: false, firstBadSequence: 4, anchor: anchorAt(org, 4) },
        JSON.stringify(result),
      );
      assert.match(result.reason!, /entry 4 does not match its signed checkpoint/);
    } finally {
      await owner.end();
    }
  });

  test('the checkpoint job never signs over a broken segment: it throws audit_chain_broken and writes no anchor or row', async () => {
    const { org, chain, owner } = await anchoredOrg();
    try {
      await service.record(chain, actor, [{ action: 'note.added', n: 8 }]);
      await asOwner(owner, async () => {
        await owner.query(`UPDATE audit_log SET body = '{"n":"forged"}' WHERE seq = 8`);
      });
      await service.record(chain, actor, [{ action: 'note.added', n: 9 }]);
      await assert.rejects(service.checkpoint(chain), (error) => {
        assert.ok(error instanceof AppError && error.code === 'audit_chain_broken', String(error));
        assert.match(error.message, /broken at entry 8/);
        return true;
      });
      assert.ok(!s3.objects(BUCKET).some((o) => o.key === anchorKey(org.id, 9)), 'no anchor at 9');
      assert.equal((await owner.query('SELECT 1 FROM audit_checkpoints WHERE seq > 7')).rowCount, 0);

      // A tail deleted with its checkpoint rows, then new entries in its place: not signed either.
      await asOwner(owner, () => owner.query('DELETE FROM audit_log WHERE seq > 4; DELETE FROM audit_checkpoints WHERE seq > 4'));
      for (let i = 0; i < 4; i++) await service.record(chain, actor, [{ action: 'note.added', replaced: i }]);
      await assert.rejects(service.checkpoint(chain), /broken at entry 7: entry 7 does not match its signed checkpoint/);
      assert.equal((await owner.query('SELECT 1 FROM audit_checkpoints WHERE seq > 4')).rowCount, 0);
    } finally {
      await owner.end();
    }
  });
});
