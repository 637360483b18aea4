import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { OrgClient } from '../support/client';
import { TestWorld } from '../support/world';

/**
 * Revocation on the replica that answered it is immediate even under concurrent use of the
 * credential: the credentials cache is evicted after the revoking transaction commits, so no
 * request running alongside can cache the row as it was before, for up to the cache's TTL.
 */
describe('revocation is immediate on the same replica, under concurrent use', () => {
  let world: TestWorld;
  let org: OrgClient;

  before(async () => {
    world = await TestWorld.start({ orgs: ['revoke'], config: { API_KEY_CACHE_TTL_MS: '30000' } });
    org = world.org('revoke');
  });
  after(() => world?.stop());

  /** Requests with `token` from 4 concurrent loops until the returned stop() is called. */
  function hammer(token: string) {
    let running = true;
    const loops = Array.from({ length: 4 }, async () => {
      while (running) await org.as(token).get();
    });
    return async () => {
      running = false;
      await Promise.all(loops);
    };
  }

  test('200 times: a key revoked while in use is refused by the next request after the revoke answered', async () => {
    const member = await world.addUser(org, 'member');
    const late: number[] = [];
    for (let i = 0; i < 200; i++) {
      const issued = await org.post(`users/${member.userId}/api-keys`).send({ name: `k${i}` });
      assert.equal(issued.status, 201);
      const token: string = issued.body.apiKey.secret;
      assert.equal((await org.as(token).get()).status, 200);
      const stop = hammer(token);
      const revoke = await org.delete(`api-keys/${issued.body.apiKey.id}`);
      assert.equal(revoke.status, 200);
      const next = await org.as(token).get();
      await stop();
      if (next.status !== 401) late.push(i);
    }
    assert.deepEqual(late, [], 'iterations where a revoked key was still accepted');
  });

  test('50 times: a user disabled while their key is in use is refused by the next request', async () => {
    const late: number[] = [];
    for (let i = 0; i < 50; i++) {
      const user = await world.addUser(org, 'member');
      assert.equal((await org.as(user).get()).status, 200);
      const stop = hammer(user.token);
      const disable = await org.post(`users/${user.userId}/disable`);
      assert.equal(disable.status, 200);
      const next = await org.as(user).get();
      await stop();
      if (next.status !== 401) late.push(i);
    }
    assert.deepEqual(late, [], 'iterations where a disabled user was still accepted');
  });
});
