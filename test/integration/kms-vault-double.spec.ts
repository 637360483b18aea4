import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import NodeVault from 'node-vault';
import { OpenBaoDouble } from '../support/openbao-double';

/**
 * The double against the facts of the Vault / OpenBao HTTP API in test/support/README.md, over plain HTTP, so that
 * code passing against the double has been tested against Vault's behaviour and not against the
 * double's own ideas.
 */

/**
 * One request to the double, as JSON, on a connection of its own (a restart closes the open
 * ones); the token is the double's root token unless given.
 */
function callDouble(bao: OpenBaoDouble, method: string, path: string, body?: unknown, token: string | null = bao.token) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers['x-vault-token'] = token;
  return new Promise<{ status: number; body: any }>((resolve, reject) => {
    const req = httpRequest(`${bao.address}/v1/${path}`, { method, headers, agent: false }, (res) => {
      let text = '';
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : undefined }));
    });
    req.once('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

describe('Vault transit double: speaks the Vault HTTP API (HTTP)', () => {
  const vault = new OpenBaoDouble();
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const call = (method: string, path: string, body?: unknown, token: string | null = vault.token) => callDouble(vault, method, path, body, token);

  before(() => vault.start());
  after(() => vault.stop());

  test('create answers 204, read wraps the key in the response envelope, missing keys are 404 {errors: []}', async () => {
    assert.equal((await call('POST', 'transit/keys/k1', { type: 'aes256-gcm96' })).status, 204);
    const read = await call('GET', 'transit/keys/k1');
    assert.equal(read.status, 200);
    for (const field of ['request_id', 'lease_id', 'renewable', 'lease_duration', 'data', 'wrap_info', 'warnings', 'auth']) {
      assert.ok(field in read.body, field);
    }
    assert.equal(read.body.data.type, 'aes256-gcm96');
    assert.equal(read.body.data.latest_version, 1);
    assert.equal(read.body.data.min_decryption_version, 1);
    assert.equal(typeof read.body.data.keys['1'], 'number', 'creation time in unix seconds, never material');
    assert.deepEqual(await call('GET', 'transit/keys/missing'), { status: 404, body: { errors: [] } });
    assert.equal((await call('POST', 'transit/keys/k9', { type: 'rsa-1024' })).status, 400);
  });

  test('list: GET ?list=true, and node-vault list() with noCustomHTTPVerbs', async () => {
    await call('POST', 'transit/keys/k2');
    const listed = await call('GET', 'transit/keys?list=true');
    assert.equal(listed.status, 200);
    assert.ok(listed.body.data.keys.includes('k2'));
    const client = NodeVault({ endpoint: vault.address, token: vault.token, noCustomHTTPVerbs: true });
    assert.ok((await client.list('transit/keys')).data.keys.includes('k2'));
    assert.equal((await call('GET', 'transit/keys')).status, 404, 'without list=true there is no such read');
  });

  test('encrypt/decrypt: vault:vN: ciphertexts, batch form, and 400 for tampered or foreign ciphertext', async () => {
    await call('POST', 'transit/keys/k3');
    await call('POST', 'transit/keys/k4');
    const enc = await call('POST', 'transit/encrypt/k3', { plaintext: b64('hello') });
    assert.equal(enc.status, 200);
    assert.match(enc.body.data.ciphertext, /^vault:v1:[A-Za-z0-9+/]+=*$/);
    assert.equal(enc.body.data.key_version, 1);
    const dec = await call('POST', 'transit/decrypt/k3', { ciphertext: enc.body.data.ciphertext });
    assert.equal(Buffer.from(dec.body.data.plaintext, 'base64').toString(), 'hello');
    const foreign = await call('POST', 'transit/decrypt/k4', { ciphertext: enc.body.data.ciphertext });
    assert.equal(foreign.status, 400);
    const body = Buffer.from(enc.body.data.ciphertext.slice('vault:v1:'.length), 'base64');
    body[body.length - 1] ^= 1;
    assert.equal((await call('POST', 'transit/decrypt/k3', { ciphertext: `vault:v1:${body.toString('base64')}` })).status, 400);
    const batch = await call('POST', 'transit/encrypt/k3', { batch_input: [{ plaintext: b64('a') }, { plaintext: '***' }] });
    assert.match(batch.body.data.batch_results[0].ciphertext, /^vault:v1:/);
    assert.ok(batch.body.data.batch_results[1].error);
  });

  test('rotate, min_decryption_version ("disallowed by policy"), rewrap and datakey', async () => {
    await call('POST', 'transit/keys/k5');
    const old = (await call('POST', 'transit/encrypt/k5', { plaintext: b64('old') })).body.data.ciphertext;
    assert.equal((await call('POST', 'transit/keys/k5/rotate')).body.data.latest_version, 2);
    const rewrapped = await call('POST', 'transit/rewrap/k5', { ciphertext: old });
    assert.match(rewrapped.body.data.ciphertext, /^vault:v2:/);
    assert.equal((await call('POST', 'transit/keys/k5/config', { min_decryption_version: 3 })).status, 400);
    assert.equal((await call('POST', 'transit/keys/k5/config', { min_decryption_version: 2 })).status, 204);
    const refused = await call('POST', 'transit/decrypt/k5', { ciphertext: old });
    assert.equal(refused.status, 400);
    assert.match(refused.body.errors[0], /disallowed by policy/);
    const dk = await call('POST', 'transit/datakey/plaintext/k5', { bits: 256 });
    assert.equal(Buffer.from(dk.body.data.plaintext, 'base64').length, 32);
    assert.match(dk.body.data.ciphertext, /^vault:v2:/);
    const wrapped = await call('POST', 'transit/datakey/wrapped/k5', {});
    assert.equal(wrapped.body.data.plaintext, undefined, 'datakey/wrapped returns no plaintext');
    assert.equal((await call('DELETE', 'transit/keys/k5')).status, 400, 'deletion needs deletion_allowed');
  });

  test('hmac, sign and verify', async () => {
    await call('POST', 'transit/keys/k6');
    const mac1 = await call('POST', 'transit/hmac/k6', { input: b64('alice@example.com') });
    const mac2 = await call('POST', 'transit/hmac/k6/sha2-256', { input: b64('alice@example.com') });
    assert.match(mac1.body.data.hmac, /^vault:v1:/);
    assert.equal(mac1.body.data.hmac, mac2.body.data.hmac, 'deterministic: usable as a blind index');
    assert.equal((await call('POST', 'transit/sign/k6', { input: b64('x') })).status, 400, 'aes keys do not sign');
    await call('POST', 'transit/keys/k7', { type: 'ed25519' });
    const signed = await call('POST', 'transit/sign/k7', { input: b64('x') });
    assert.match(signed.body.data.signature, /^vault:v1:/);
    const ok = await call('POST', 'transit/verify/k7', { input: b64('x'), signature: signed.body.data.signature });
    const bad = await call('POST', 'transit/verify/k7', { input: b64('y'), signature: signed.body.data.signature });
    assert.deepEqual([ok.body.data.valid, bad.body.data.valid], [true, false]);
  });

  test('403 for a missing or bad token; 503 "Vault is sealed" when sealed; sys/health codes', async () => {
    assert.deepEqual(await call('GET', 'transit/keys/k1', undefined, null), { status: 403, body: { errors: ['permission denied'] } });
    assert.equal((await call('GET', 'transit/keys/k1', undefined, 'hvs.bad')).status, 403);
    const healthy = await call('GET', 'sys/health', undefined, null);
    assert.equal(healthy.status, 200);
    assert.deepEqual([healthy.body.initialized, healthy.body.sealed], [true, false]);
    vault.seal();
    try {
      assert.deepEqual(await call('POST', 'transit/encrypt/k1', { plaintext: b64('x') }), {
        status: 503,
        body: { errors: ['Vault is sealed'] },
      });
      const sealed = await call('GET', 'sys/health', undefined, null);
      assert.equal(sealed.status, 503);
      assert.equal(sealed.body.sealed, true);
      assert.equal((await call('GET', 'sys/health?sealedcode=200', undefined, null)).status, 200);
    } finally {
      vault.unseal();
    }
  });

  test('stop() refuses connections and start() comes back on the same port', async () => {
    const address = vault.address;
    await vault.stop();
    await assert.rejects(fetch(`${address}/v1/sys/health`));
    await vault.start();
    assert.equal(vault.address, address);
    assert.equal((await call('GET', 'sys/health', undefined, null)).status, 200);
  });
});

describe('OpenBao sys API double: one seal and health model for init, unseal and transit (HTTP)', () => {
  const bao = new OpenBaoDouble({ uninitialized: true });
  const call = (method: string, path: string, body?: unknown, token: string | null = bao.token) => callDouble(bao, method, path, body, token);
  const health = async (query = '') => (await call('GET', `sys/health${query}`, undefined, null)).status;

  before(() => bao.start());
  after(() => bao.stop());

  test('uninitialized: health 501, data calls 503 "Vault is sealed" before the token is looked at', async () => {
    assert.equal(await health(), 501);
    assert.equal(await health('?uninitcode=200'), 200);
    assert.deepEqual((await call('GET', 'sys/init', undefined, null)).body, { initialized: false });
    assert.deepEqual(await call('GET', 'sys/mounts', undefined, 'anything'), { status: 503, body: { errors: ['Vault is sealed'] } });
    assert.equal((await call('PUT', 'sys/unseal', { key: 'x' }, null)).status, 400);
  });

  test('init hands out the key and root token once; sealed until unsealed (503, health 503); a wrong key is 400', async () => {
    const init = await call('PUT', 'sys/init', { secret_shares: 1, secret_threshold: 1 }, null);
    assert.equal(init.status, 200);
    assert.deepEqual([init.body.keys_base64, init.body.root_token], [[bao.unsealKey], bao.token]);
    assert.equal((await call('PUT', 'sys/init', { secret_shares: 1, secret_threshold: 1 }, null)).status, 400, 'only once');
    assert.equal(await health(), 503);
    assert.equal((await call('GET', 'sys/seal-status', undefined, null)).body.sealed, true);
    assert.equal((await call('GET', 'sys/mounts')).status, 503);
    assert.deepEqual(await call('PUT', 'sys/unseal', { key: 'bm9wZQ==' }, null), { status: 400, body: { errors: ['Unseal failed, invalid key'] } });
    const unsealed = await call('PUT', 'sys/unseal', { key: bao.unsealKey }, null);
    assert.deepEqual([unsealed.status, unsealed.body.sealed], [200, false]);
    assert.equal(await health(), 200);
  });

  test('transit answers only where sys/mounts enabled it, with the root token only', async () => {
    assert.equal((await call('POST', 'transit/keys/k1')).status, 404);
    assert.equal((await call('POST', 'sys/mounts/transit', { type: 'transit' }, 'hvs.bad')).status, 403);
    assert.equal((await call('POST', 'sys/mounts/transit', { type: 'transit' })).status, 204);
    assert.equal((await call('POST', 'sys/mounts/transit', { type: 'transit' })).status, 400, 'path is already in use');
    const mounts = await call('GET', 'sys/mounts');
    assert.equal(mounts.body.data['transit/'].type, 'transit');
    assert.equal((await call('POST', 'transit/keys/k1')).status, 204);
    assert.match((await call('POST', 'transit/encrypt/k1', { plaintext: 'aGk=' })).body.data.ciphertext, /^vault:v1:/);
  });

  test('a standby answers health 429, or 200 with standbyok; a restart keeps the data and comes back sealed', async () => {
    bao.standby = true;
    try {
      assert.equal(await health(), 429);
      assert.equal(await health('?standbyok=true'), 200);
      assert.equal((await call('GET', 'sys/health', undefined, null)).body.standby, true);
    } finally {
      bao.standby = false;
    }
    const address = bao.address;
    await bao.restart();
    assert.equal(bao.address, address);
    assert.equal(await health(), 503);
    assert.equal((await call('POST', 'transit/encrypt/k1', { plaintext: 'aGk=' })).status, 503);
    await call('PUT', 'sys/unseal', { key: bao.unsealKey }, null);
    assert.equal((await call('GET', 'transit/keys/k1')).body.data.latest_version, 1, 'the key survived the restart');
  });
});
