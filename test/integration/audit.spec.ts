import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from 'pg';
import { audit, AUDIT_LIMITS, AuditChain, AuditRepository, AuditService, auditVars, ChainedEntry, ChainVerifier, entryHash, fromRow } from '@coffer/audit';
import { DatabaseService, SchemaService } from '@coffer/database';
import { AppError } from '@coffer/http';
import { OrgProvisioner } from '@coffer/orgs';
import { Actor, OrgRef } from '@coffer/tenancy';
import { testProvisioner } from '../support/provisioner';
import { connect, createTestEnv, TestEnv } from '../support/test-env';

const actor: Actor = { id: 'user:test', kind: 'user' };
const source = { requestId: 'req-1', clientIp: '203.0.113.7', userAgent: 'audit-spec' };

/** Audit params whose JSON encoding is exactly `bytes` long. */
function sized(bytes: number, action = 'test.sized') {
  const empty = Buffer.byteLength(JSON.stringify({ action, blob: '' }));
  return { action, blob: 'x'.repeat(bytes - empty) };
}

describe('audit trail: entries commit with the change, hash-chained, verifiable (PostgreSQL)', () => {
  let env: TestEnv;
  let db: DatabaseService;
  let service: AuditService;
  let provisioner: OrgProvisioner;
  let org: OrgRef;
  let chain: AuditChain;
  let owner: Client;
  let counter = 0;

  /** A fresh org with a table the app role may write, standing for any audited change. */
  async function newOrg(): Promise<{ org: OrgRef; chain: AuditChain; owner: Client }> {
    const { org } = await provisioner.register(`audit-${++counter}`, `Audit ${counter}`);
    await provisioner.provision(org);
    const owner = await connect(env.config.DATABASE_OWNER_URL, org.databaseName);
    await owner.query(`CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)`);
    await owner.query(`GRANT SELECT, INSERT ON notes TO ${env.appRole}; GRANT USAGE ON SEQUENCE notes_id_seq TO ${env.appRole}`);
    return { org, chain: service.chain(org), owner };
  }

  /** An audited mutation: a note plus whatever `emit` audits, in one unit of work. */
  function mutate(target: { org: OrgRef; chain: AuditChain }, text: string, emit: () => void = () => audit({ action: 'note.added', text })) {
    return service.run({
      actor,
      source,
      transactional: true,
      chain: () => target.chain,
      automatic: { action: 'POST /notes', target: () => null },
      work: async () => {
        await db.org(target.org.databaseName).query('INSERT INTO notes (text) VALUES ($1)', [text]);
        emit();
        return text;
      },
    });
  }

  const notes = async (c: Client, text: string) => (await c.query('SELECT 1 FROM notes WHERE text = $1', [text])).rowCount;
  const entries = async (c = chain) => {
    const all: ChainedEntry[] = [];
    for await (const entry of service.scan(c)) all.push(entry);
    return all;
  };

  before(async () => {
    env = await createTestEnv();
    await new SchemaService(env.config).migrateControlPlane();
    const provisioning = testProvisioner(env);
    ({ provisioner, db } = provisioning);
    service = provisioning.audit;
    ({ org, chain, owner } = await newOrg());
  });

  after(async () => {
    await owner?.end();
    await db?.onApplicationShutdown();
    await env?.destroy();
  });

  test('a mutation commits with its own entry and the automatic one, dynamic values resolved', async () => {
    const before = (await entries()).length;
    await mutate({ org, chain }, 'first', () => audit({ action: 'note.added', ip: auditVars.ip, at: auditVars.now }));
    assert.equal(await notes(owner, 'first'), 1);
    const added = (await entries()).slice(before);
    assert.deepEqual(added.map((e) => [e.action, e.outcome]), [['note.added', 'success'], ['POST /notes', 'success']]);
    assert.equal(added[0].body.ip, '203.0.113.7');
    assert.equal(typeof added[0].body.at, 'number');
    assert.deepEqual(added[0].actor, actor);
    assert.equal(added[0].requestId, 'req-1');
    assert.deepEqual(await service.verify(chain), { valid: true, checkedThrough: before + 2 });
  });

  test('when the audit insert fails, the change rolls back; the failure gets its own entry', async () => {
    // Only the owner can do this: every success entry is now refused by the database.
    await owner.query(`ALTER TABLE audit_log ADD CONSTRAINT refuse_success CHECK (outcome <> 'success') NOT VALID`);
    try {
      await assert.rejects(mutate({ org, chain }, 'lost'), /refuse_success/);
    } finally {
      await owner.query('ALTER TABLE audit_log DROP CONSTRAINT refuse_success');
    }
    assert.equal(await notes(owner, 'lost'), 0);
    const last = (await entries()).at(-1)!;
    assert.equal(last.action, 'POST /notes');
    assert.equal(last.outcome, 'failure');
    assert.deepEqual(last.body.error, { code: 'internal_error', status: 500 });
    assert.equal((await service.verify(chain)).valid, true);
  });

  test('a failed mutation leaves no change and an entry with its error code', async () => {
    const count = (await entries()).length;
    await assert.rejects(
      mutate({ org, chain }, 'conflicting', () => {
        audit({ action: 'note.added' });
        throw new AppError('user_email_taken', 'taken');
      }),
      AppError,
    );
    assert.equal(await notes(owner, 'conflicting'), 0);
    const added = (await entries()).slice(count);
    assert.deepEqual(
      added.map((e) => [e.action, e.outcome, e.body.error]),
      [['POST /notes', 'failure', { code: 'user_email_taken', status: 409 }]],
    );
  });

  test('limits: 500 entries, 1 MiB each and 4 MiB in all pass; one more entry or byte commits nothing', async () => {
    const mib = 1024 * 1024;
    const automatic = Buffer.byteLength(JSON.stringify({ action: 'POST /notes' })); // counts too
    const cases: { name: string; fits: () => void; over: () => void }[] = [
      {
        name: 'entries',
        fits: () => Array.from({ length: AUDIT_LIMITS.entries - 1 }, () => audit({ action: 'n' })),
        over: () => Array.from({ length: AUDIT_LIMITS.entries }, () => audit({ action: 'n' })),
      },
      { name: 'entry size', fits: () => audit(sized(mib)), over: () => audit(sized(mib + 1)) },
      {
        name: 'total size',
        fits: () => [mib, mib, mib, mib - 100 - automatic, 100].forEach((n) => audit(sized(n))),
        over: () => [mib, mib, mib, mib - 100 - automatic, 101].forEach((n) => audit(sized(n))),
      },
    ];
    assert.equal(AUDIT_LIMITS.entryBytes, mib);
    assert.equal(AUDIT_LIMITS.totalBytes, 4 * mib);
    for (const { name, fits, over } of cases) {
      // The automatic entry is one of the 500, so the handler may add 499.
      await mutate({ org, chain }, `fits ${name}`, fits);
      assert.equal(await notes(owner, `fits ${name}`), 1, name);
      const count = (await entries()).length;
      await assert.rejects(mutate({ org, chain }, `over ${name}`, over), (e: unknown) => e instanceof AppError && e.code === 'audit_limit_exceeded');
      assert.equal(await notes(owner, `over ${name}`), 0, name);
      const added = (await entries()).slice(count);
      assert.deepEqual(added.map((e) => [e.outcome, e.body.error]), [['failure', { code: 'audit_limit_exceeded', status: 500 }]], name);
    }
    assert.equal((await service.verify(chain)).valid, true);
  });

  test('one scope, a unit per item: each item commits with its entries while the work runs, a failed item rolls back alone, scopes do not nest', async () => {
    const target = await newOrg();
    const insert = (text: string) => db.org(target.org.databaseName).query('INSERT INTO notes (text) VALUES ($1)', [text]);
    const item = (text: string, fail = false) => async () => {
      await insert(text);
      audit({ action: 'note.added', text });
      if (fail) throw new Error(`${text} failed`);
      return text;
    };
    try {
      await assert.rejects(
        service.run({
          actor,
          source,
          transactional: true,
          chain: () => target.chain,
          automatic: { action: 'POST /notes/batch', target: () => null },
          work: async () => {
            assert.equal(await service.commitUnit(item('unit 1')), 'unit 1');
            assert.equal(await notes(target.owner, 'unit 1'), 1, 'committed while the scope still runs');
            assert.deepEqual((await entries(target.chain)).map((e) => e.body.text), ['unit 1'], 'with its entry');
            await assert.rejects(service.commitUnit(item('unit 2', true)), /unit 2 failed/);
            await service.commitUnit(item('unit 3'));
            await assert.rejects(
              service.run({ actor, source, transactional: true, chain: () => target.chain, work: async () => undefined }),
              /scopes do not nest/,
            );
            await item('tail')();
            throw new AppError('user_email_taken', 'taken');
          },
        }),
        AppError,
      );
      assert.deepEqual(
        [await notes(target.owner, 'unit 1'), await notes(target.owner, 'unit 2'), await notes(target.owner, 'unit 3'), await notes(target.owner, 'tail')],
        [1, 0, 1, 0],
      );
      assert.deepEqual(
        (await entries(target.chain)).map((e) => [e.action, e.outcome, e.body.text ?? e.body.error]),
        [
          ['note.added', 'success', 'unit 1'],
          ['note.added', 'success', 'unit 3'],
          ['POST /notes/batch', 'failure', { code: 'user_email_taken', status: 409 }],
        ],
      );
      assert.deepEqual(await service.verify(target.chain), { valid: true, checkedThrough: 3 });
      await assert.rejects(service.commitUnit(item('no scope')), /outside a transactional scope/);
    } finally {
      await target.owner.end();
    }
  });

  test('32 concurrent writers produce a gap-free, fork-free chain that verifies', async () => {
    const target = await newOrg();
    try {
      await Promise.all(
        Array.from({ length: 32 }, (_, writer) =>
          (async () => {
            for (let i = 0; i < 5; i++) await mutate(target, `w${writer}-${i}`);
          })(),
        ),
      );
      const all = await entries(target.chain);
      assert.equal(all.length, 32 * 5 * 2);
      assert.deepEqual(all.map((e) => e.seq), Array.from({ length: all.length }, (_, i) => i + 1));
      assert.equal(new Set(all.map((e) => e.prevHash.toString('hex'))).size, all.length, 'no two entries share a predecessor');
      assert.deepEqual(await service.verify(target.chain), { valid: true, checkedThrough: all.length });
    } finally {
      await target.owner.end();
    }
  });

  describe('the owner role, which can bypass the triggers, cannot rewrite history unnoticed', () => {
    const tampering: [string, (c: Client) => Promise<unknown>, number, RegExp][] = [
      ['editing an entry', (c) => c.query(`UPDATE audit_log SET body = '{"text":"forged"}' WHERE seq = 4`), 4, /altered/],
      ['deleting an entry', (c) => c.query('DELETE FROM audit_log WHERE seq = 4'), 4, /missing/],
      ['deleting the newest entries, past a checkpoint', (c) => c.query('DELETE FROM audit_log WHERE seq > 5'), 6, /no longer there/],
      [
        'inserting an entry',
        async (c) => {
          await c.query('UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 4');
          await c.query('UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1004');
          await c.query(
            `INSERT INTO audit_log (seq, id, occurred_at, action, outcome, actor, body, prev_hash, hash)
             SELECT 4, gen_random_uuid(), now(), 'forged', 'success', '{}', '{}', hash, hash FROM audit_log WHERE seq = 3`,
          );
        },
        4,
        /altered/,
      ],
      [
        'swapping two entries',
        async (c) => {
          await c.query('UPDATE audit_log SET seq = -seq WHERE seq IN (4, 5)');
          await c.query('UPDATE audit_log SET seq = CASE seq WHEN -4 THEN 5 ELSE 4 END WHERE seq IN (-4, -5)');
        },
        4,
        /link/,
      ],
      [
        'editing a checkpoint-covered entry and rehashing the rest',
        async (c) => {
          await c.query(`UPDATE audit_log SET action = 'forged' WHERE seq = 2`);
          await rehashFrom(c, 2);
        },
        6,
        /checkpoint/,
      ],
    ];

    for (const [what, tamper, seq, reason] of tampering) {
      test(`${what} is reported at sequence ${seq}`, async () => {
        const target = await newOrg();
        try {
          // A signed checkpoint at 6 pins the chain's hash there, whatever is done to the rows later.
          for (let i = 0; i < 3; i++) await mutate(target, `entry ${i}`);
          assert.equal(await service.checkpoint(target.chain), 6);
          for (let i = 3; i < 5; i++) await mutate(target, `entry ${i}`);
          assert.deepEqual(await service.verify(target.chain), { valid: true, checkedThrough: 10 });

          await target.owner.query('ALTER TABLE audit_log DISABLE TRIGGER USER');
          await tamper(target.owner);
          await target.owner.query('ALTER TABLE audit_log ENABLE TRIGGER USER');

          const result = await service.verify(target.chain);
          assert.equal(result.valid, false);
          assert.equal(result.firstBadSequence, seq);
          assert.equal(result.checkedThrough, seq - 1);
          assert.match(result.reason!, reason);
        } finally {
          await target.owner.end();
        }
      });
    }
  });

  test('checkpoints: signed by the chain\'s KMS key only when the head moved; a forged one is reported', async () => {
    const target = await newOrg();
    const repository = new AuditRepository(db);
    try {
      assert.equal(await service.checkpoint(target.chain), undefined, 'an empty chain has nothing to sign');
      await mutate(target, 'one');
      assert.equal(await service.checkpoint(target.chain), 2);
      assert.equal(await service.checkpoint(target.chain), undefined, 'an unchanged head is not signed twice');
      await mutate(target, 'two');
      assert.equal(await service.checkpoint(target.chain), 4);
      const [first] = await repository.checkpoints(target.chain);
      assert.equal(first.keyName, `coffer-audit-${target.org.id}`);
      assert.deepEqual(await service.verify(target.chain), { valid: true, checkedThrough: 4 });

      // The owner cannot sign: a checkpoint carrying a real signature of this chain's key, made
      // over other data, is reported.
      await mutate(target, 'three');
      const six = (await entries(target.chain))[5];
      await repository.insertCheckpoint(target.chain, { seq: 6, hash: six.hash, keyName: first.keyName, signature: first.signature });
      const result = await service.verify(target.chain);
      assert.deepEqual([result.valid, result.firstBadSequence], [false, 6]);
      assert.match(result.reason!, /invalid signature/);
    } finally {
      await target.owner.end();
    }
  });

  test('the control plane has a chain of its own; a chain does not verify under another id', async () => {
    const control = service.chain(undefined);
    await service.record(control, actor, [{ action: 'test.control' }]);
    assert.equal((await entries(control)).at(-1)?.action, 'test.control');
    assert.equal((await service.verify(control)).valid, true);
    const elsewhere = new ChainVerifier('another-org');
    for (const entry of await entries()) elsewhere.next(entry);
    assert.equal(elsewhere.result().firstBadSequence, 1);
  });

  /** What an attacker who knows the hash scheme does: recompute every hash from `seq` on. */
  async function rehashFrom(c: Client, seq: number) {
    const { rows } = await c.query('SELECT * FROM audit_log WHERE seq >= $1 ORDER BY seq', [seq - 1]);
    let prev = rows[0].hash as Buffer;
    for (const row of rows.slice(1)) {
      const entry = fromRow(row);
      const hash = entryHash(prev, entry);
      await c.query('UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE seq = $3', [prev, hash, entry.seq]);
      prev = hash;
    }
  }
});
