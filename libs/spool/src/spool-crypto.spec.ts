import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openFromSpool, sealToSpool, SpoolIntegrityError, spoolPrivateKey, spoolPublicKey } from './spool-crypto';

describe('spool sealing (X25519 ECIES, HKDF-SHA256, AES-256-GCM)', () => {
  const secret = randomBytes(32);
  const privateKey = spoolPrivateKey(secret);
  const publicKey = spoolPublicKey(privateKey);
  const binding = { orgId: 'org1', rowId: 'row1' };
  const dek = randomBytes(32);

  test('a DEK sealed to the public key opens with the private key made from the same secret', () => {
    const sealed = sealToSpool('k1', publicKey, binding, dek);
    assert.match(sealed, /^spool:k1:[A-Za-z0-9+/]+=*$/);
    assert.ok(!sealed.includes(dek.toString('base64')));
    assert.deepEqual(openFromSpool('k1', spoolPrivateKey(Buffer.from(secret)), binding, sealed), dek);
  });

  test('each sealing is fresh: the same DEK never seals to the same bytes', () => {
    assert.notEqual(sealToSpool('k1', publicKey, binding, dek), sealToSpool('k1', publicKey, binding, dek));
  });

  test('a flipped byte anywhere, another row, another org, another key id or another private key fails closed', () => {
    const sealed = sealToSpool('k1', publicKey, binding, dek);
    const body = Buffer.from(sealed.slice('spool:k1:'.length), 'base64');
    for (const at of [0, 31, 32, 40, 44, body.length - 1]) {
      const tampered = Buffer.from(body);
      tampered[at] ^= 1;
      assert.throws(() => openFromSpool('k1', privateKey, binding, `spool:k1:${tampered.toString('base64')}`), SpoolIntegrityError);
    }
    assert.throws(() => openFromSpool('k1', privateKey, { ...binding, rowId: 'row2' }, sealed), SpoolIntegrityError);
    assert.throws(() => openFromSpool('k1', privateKey, { ...binding, orgId: 'org2' }, sealed), SpoolIntegrityError);
    assert.throws(() => openFromSpool('k2', privateKey, binding, sealed.replace('spool:k1:', 'spool:k2:')), SpoolIntegrityError);
    assert.throws(() => openFromSpool('k1', spoolPrivateKey(randomBytes(32)), binding, sealed), SpoolIntegrityError);
    assert.throws(() => openFromSpool('k1', privateKey, binding, 'spool:k1:AAAA'), SpoolIntegrityError);
  });
});
