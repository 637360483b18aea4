import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from 'pg';
import { audit, AuditChain, AuditRepository, AuditService, auditWriteFailures, ChainedEntry, TRUNCATED_MARKER } from '@coffer/audit';
import { DatabaseService, SchemaService } from '@coffer/database';
import { AppError } from '@coffer/http';
import type { Logger } from '@coffer/logging';
import { OrgProvisioner } from '@coffer/orgs';
import { Actor, OrgRef } from '@coffer/tenancy';
import { testProvisioner } from '../support/provisioner';
import { connect, createTestEnv, TestEnv } from '../support/test-env';

const actor: Actor = { id: 'user:test', kind: 'user' };
const source = { requestId: 'req-s', clientIp: '203.0.113.9', userAgent: 'sanitize-spec' };

describe('audit trail: an entry PostgreSQL refuses as written is appended sanitized, never dropped', () => {
  let env: TestEnv;
  let db: DatabaseService;
  let service: AuditService;
  let provisioner: OrgProvisioner;
  let org: OrgRef;
  let chain: AuditChain;
  let owner: Client;
  const logged: { fields: Record<string, unknown>; message: string }[] = [];

  const entries = async () => {
    const all: ChainedEntry[] = [];
    for await (const entry of service.scan(chain)) all.push(entry);
    return all;
  };
  const failuresCounted = async () => (await auditWriteFailures.get()).values.reduce((n, v) => n + v.value, 0);

  before(async () => {
    env = await createTestEnv();
    await new SchemaService(env.config).migrateControlPlane();
    const provisioning = testProvisioner(env);
    ({ provisioner, db } = provisioning);
    const logger = { error: (fields: Record<string, unknown>, message: string) => logged.push({ fields, message }) } as unknown as Logger;
    service = new AuditService(new AuditRepository(db), logger, provisioning.kms);
    ({ org } = await provisioner.register('sanitize', 'Sanitize'));
    await provisioner.provision(org);
    chain = service.chain(org);
    owner = await connect(env.config.DATABASE_OWNER_URL, org.databaseName);
    await owner.query(`CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)`);
    await owner.query(`GRANT SELECT, INSERT ON notes TO ${env.appRole}; GRANT USAGE ON SEQUENCE notes_id_seq TO ${env.appRole}`);
  });

  after(async () => {
    await owner?.end();
    await db?.onApplicationShutdown();
    await env?.destroy();
  });

  test('a mutation whose audit() holds a NUL and a lone surrogate commits, its entry escaped and flagged', async () => {
    const before = (await entries()).length;
    const text = await service.run({
      actor,
      source,
      transactional: true,
      chain: () => chain,
      automatic: { action: 'POST /notes', target: () => null },
      work: async () => {
        await db.org(org.databaseName).query('INSERT INTO notes (text) VALUES ($1)', ['nul']);
        audit({ action: 'note.added', note: 'a\u0000b', odd: 'x\ud800y', fine: 'line\nbreak' });
        return 'nul';
      },
    });
    assert.equal(text, 'nul');
    assert.equal((await owner.query(`SELECT 1 FROM notes WHERE text = 'nul'`)).rowCount, 1);
    const added = (await entries()).slice(before);
    assert.deepEqual(added.map((e) => e.action), ['note.added', 'POST /notes']);
    assert.deepEqual(added[0].body, { note: 'a\\u0000b', odd: 'x\\ud800y', fine: 'line\\u000abreak', sanitized: true });
    assert.equal(added[1].body.sanitized, undefined, 'an entry PostgreSQL takes is written as it is');
    assert.equal((await service.verify(chain)).valid, true);
  });

  test("a failure's entry with a NUL in the work's details is written sanitized", async () => {
    const before = (await entries()).length;
    await service.recordFailure(
      { actor, source, chain: () => chain, automatic: { action: 'POST /notes', target: () => ({ id: 'n\u0000' }) } },
      new AppError('forbidden', 'no'),
      undefined,
      { slug: 'bad\u0000slug' },
    );
    const [entry] = (await entries()).slice(before);
    assert.equal(entry.outcome, 'failure');
    assert.deepEqual(entry.target, { id: 'n\\u0000' });
    assert.deepEqual(entry.body, { slug: 'bad\\u0000slug', error: { code: 'forbidden', status: 403 }, sanitized: true });
  });

  test('an entry over a limit of the database is appended again, cut with a marker and flagged', async () => {
    await owner.query(`ALTER TABLE audit_log ADD CONSTRAINT action_limit CHECK (octet_length(action) <= 256) NOT VALID`);
    const before = (await entries()).length;
    try {
      await service.record(chain, actor, [{ action: `long.${'x'.repeat(300)}`, blob: 'y'.repeat(70 * 1024) }], source);
    } finally {
      await owner.query('ALTER TABLE audit_log DROP CONSTRAINT action_limit');
    }
    const [entry] = (await entries()).slice(before);
    assert.equal(entry.action, `long.${'x'.repeat(195)}${TRUNCATED_MARKER}`);
    assert.equal(entry.body.blob, `${'y'.repeat(64 * 1024)}${TRUNCATED_MARKER}`);
    assert.equal(entry.body.sanitized, true);
    assert.equal((await service.verify(chain)).valid, true);
  });

  test("when even the sanitized append of a failure's entry fails, it is logged as an error and counted", async () => {
    await owner.query(`ALTER TABLE audit_log ADD CONSTRAINT refuse_all CHECK (false) NOT VALID`);
    const counted = await failuresCounted();
    logged.length = 0;
    try {
      await service.recordFailure(
        { actor, source, chain: () => chain, automatic: { action: 'POST /notes', target: () => null } },
        new AppError('forbidden', 'no'),
      );
    } finally {
      await owner.query('ALTER TABLE audit_log DROP CONSTRAINT refuse_all');
    }
    assert.equal(await failuresCounted(), counted + 1);
    assert.deepEqual(logged.map((l) => [l.message, l.fields.requestId, l.fields.action]), [
      ['audit entry of a failed request not written', 'req-s', 'POST /notes'],
    ]);
  });

  test('a read whose entries cannot be written even sanitized fails', async () => {
    await owner.query(`ALTER TABLE audit_log ADD CONSTRAINT refuse_all CHECK (false) NOT VALID`);
    try {
      await assert.rejects(
        service.run({
          actor,
          source,
          transactional: false,
          chain: () => chain,
          automatic: { action: 'notes.listed', target: () => null },
          work: async () => 'read',
        }),
        /refuse_all/,
      );
    } finally {
      await owner.query('ALTER TABLE audit_log DROP CONSTRAINT refuse_all');
    }
  });
});
