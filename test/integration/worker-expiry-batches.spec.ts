import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { OrgClient } from '../support/client';
import { connect } from '../support/test-env';
import { TestWorld } from '../support/world';

describe('worker: expire-api-keys works in batches below the audit limit', () => {
  let world: TestWorld;
  let org: OrgClient;

  before(async () => {
    world = await TestWorld.start({ config: { EXPIRE_API_KEYS_CRON: '* * * * * *' }, orgs: ['many-keys'] });
    org = world.org('many-keys');
  });
  after(() => world?.stop());

  test('501 keys of one member, due at once, all expire, each with its entry: the job is not wedged by the audit limit', async () => {
    const member = await world.addUser(org, 'member');
    const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
    const ids: string[] = [];
    for (let i = 0; i < 501; i += 25) {
      const issued = await Promise.all(
        Array.from({ length: Math.min(25, 501 - i) }, (_, j) =>
          org.as(member).post(`users/${member.userId}/api-keys`).send({ name: `short ${i + j}`, expiresAt }),
        ),
      );
      for (const res of issued) {
        assert.equal(res.status, 201);
        ids.push(res.body.apiKey.id);
      }
    }
    const owner = await connect(world.config.DATABASE_OWNER_URL, `${world.config.ORG_DATABASE_PREFIX}${org.id}`);
    try {
      // Due now: as if a member had issued them short-lived a while ago.
      await owner.query(`UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = ANY($1)`, [ids]);
      await world.startWorker();
      const deadline = Date.now() + 60_000;
      let expired = 0;
      do {
        await new Promise((resolve) => setTimeout(resolve, 250));
        expired = (await owner.query('SELECT count(*)::int AS n FROM api_keys WHERE expired_at IS NOT NULL AND id = ANY($1)', [ids])).rows[0].n;
      } while (expired < 501 && Date.now() < deadline);
      assert.equal(expired, 501, 'every due key is marked expired');
      const entries = await owner.query(
        `SELECT target->>'id' AS id FROM audit_log WHERE action = 'api_key.expired' ORDER BY seq`,
      );
      assert.deepEqual(entries.rows.map((r: { id: string }) => r.id).sort(), [...ids].sort(), 'one api_key.expired entry per key, none twice');
    } finally {
      await owner.end();
    }
    assert.equal((await org.get('audit-logs/verify')).body.valid, true);
  });
});
