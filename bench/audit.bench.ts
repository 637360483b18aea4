import { audit } from '@coffer/audit';
import { SchemaService, transaction } from '@coffer/database';
import type { OrgRef } from '@coffer/tenancy';
import { testProvisioner } from '../test/support/provisioner';
import { connect, createTestEnv } from '../test/support/test-env';

const source = { requestId: 'bench', clientIp: '127.0.0.1', userAgent: 'bench' };
const actor = { id: 'user:bench', kind: 'user' as const };

/**
 * An audited mutation (a small row and its chained audit entry, one transaction, committed
 * together) against the same row written in a transaction without audit, same pool, same run;
 * at 1 and 16 concurrent clients, on one org (every writer queues on one chain's lock) and over
 * 16 orgs (16 chains). Goals at 16 clients: >= 0.5 on one org, >= 0.7 over 16 orgs.
 */
export async function auditBenchmark(seconds: number): Promise<boolean> {
  const env = await createTestEnv({ DATABASE_CONNECTION_BUDGET: '40', DATABASE_ORG_CONNECTION_SHARE: '32' });
  const provisioning = testProvisioner(env);
  const { db, provisioner } = provisioning;
  try {
    await new SchemaService(env.config).migrateControlPlane();
    const orgs: OrgRef[] = [];
    for (let i = 0; i < 16; i++) {
      const { org } = await provisioner.register(`bench-${i}`, `Bench ${i}`);
      await provisioner.provision(org);
      const owner = await connect(env.config.DATABASE_OWNER_URL, org.databaseName);
      await owner.query('CREATE TABLE bench_rows (id bigserial PRIMARY KEY, note text NOT NULL)');
      await owner.query(`GRANT SELECT, INSERT ON bench_rows TO ${env.appRole}; GRANT USAGE ON SEQUENCE bench_rows_id_seq TO ${env.appRole}`);
      await owner.end();
      orgs.push(org);
    }
    const service = provisioning.audit;
    const plain = (org: OrgRef) =>
      transaction(db.org(org.databaseName), (c) => c.query('INSERT INTO bench_rows (note) VALUES ($1)', ['a small row']));
    const audited = (org: OrgRef) =>
      service.run({
        actor,
        source,
        transactional: true,
        chain: () => service.chain(org),
        work: async () => {
          await db.org(org.databaseName).query('INSERT INTO bench_rows (note) VALUES ($1)', ['a small row']);
          audit({ action: 'bench.row_added', target: { table: 'bench_rows' } });
        },
      });

    await rate(plain, orgs, 16, 1); // warm-up: pools, plans, JIT
    await rate(audited, orgs, 16, 1);
    let met = true;
    for (const [clients, spread, goal] of [[1, 1, 0], [16, 1, 0.5], [1, 16, 0], [16, 16, 0.7]] as const) {
      const targets = orgs.slice(0, spread);
      const baseline = await rate(plain, targets, clients, seconds);
      const subject = await rate(audited, targets, clients, seconds);
      const ratio = subject / baseline;
      const ok = ratio >= goal;
      if (goal) met &&= ok;
      console.log(
        `audit: ${clients} client(s) over ${spread} org(s): audited ${subject.toFixed(0)} rows/s vs plain ${baseline.toFixed(0)} rows/s ` +
          `= ratio ${ratio.toFixed(2)}${goal ? ` (goal >= ${goal}) ${ok ? 'MET' : 'NOT MET'}` : ''}`,
      );
    }
    return met;
  } finally {
    await db.onApplicationShutdown();
    await env.destroy();
  }
}

/** Rows per second: `clients` loops, client i writing to org i mod n, for `seconds`. */
async function rate(write: (org: OrgRef) => Promise<unknown>, orgs: OrgRef[], clients: number, seconds: number): Promise<number> {
  const end = Date.now() + seconds * 1000;
  const cpu = process.cpuUsage();
  let rows = 0;
  await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      while (Date.now() < end) {
        await write(orgs[i % orgs.length]);
        rows++;
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  if (process.env.BENCH_VERBOSE) console.log(`  ${rows} rows, ${((used.user + used.system) / rows).toFixed(0)} µs of this process's CPU a row`);
  return rows / seconds;
}
