import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign as edSign } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { canonicalJson, ChainedEntry, entryHash, genesisHash } from './audit-chain';
import { publicEntry } from './audit.dto';
import { AuditAnchor, AuditPublicKey, checkpointData, checkpointKeyName } from './audit-signing';
import { EXPORT_KEYS_FORMAT, OfflineFile, verifyOffline } from './offline-verifier';

const CHAIN = '6f1c2b9e-0d7a-4a51-9a3e-2f4c8b1d7e60';
const KEY = checkpointKeyName(CHAIN);
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

function keyPair(version = 1) {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('base64');
  const published: AuditPublicKey = { keyName: KEY, version, algorithm: 'ed25519', publicKey: raw, createdAt: '2026-01-01T00:00:00.000Z' };
  return { privateKey, published, sign: (data: Buffer) => `local:v${version}:${edSign(null, data, privateKey).toString('base64')}` };
}

function chain(count: number, chainId = CHAIN, tweak = ''): ChainedEntry[] {
  const entries: ChainedEntry[] = [];
  let prev = genesisHash(chainId);
  for (let seq = 1; seq <= count; seq++) {
    const content = {
      seq,
      id: `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`,
      occurredAt: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)),
      action: `note.added${tweak}`,
      outcome: 'success' as const,
      actor: { kind: 'user', id: 'user:1' },
      target: null,
      requestId: `req-${seq}`,
      clientIp: '203.0.113.7',
      userAgent: 'spec',
      body: { n: seq },
    };
    const hash = entryHash(prev, content);
    entries.push({ ...content, prevHash: prev, hash });
    prev = hash;
  }
  return entries;
}

/** A delivered log as AuditDeliveryService writes it: batches of `size`, a digest each, chained and signed. */
function delivered(entries: ChainedEntry[], size: number, signer: ReturnType<typeof keyPair>, anchorEvery = 0): OfflineFile[] {
  const files: OfflineFile[] = [];
  let previous: Buffer | null = null;
  for (let first = 1, batch = 1; first <= entries.length; first += size, batch++) {
    const slice = entries.slice(first - 1, first - 1 + size);
    const last = slice[slice.length - 1];
    const object = `coffer/${CHAIN}/entries/${first}-${last.seq}.ndjson.gz`;
    const body = gzipSync(slice.map((e) => `${JSON.stringify(publicEntry(e))}\n`).join(''));
    files.push({ name: `entries/${first}-${last.seq}.ndjson.gz`, bytes: body });
    const checkpointSeq = anchorEvery ? Math.floor(last.seq / anchorEvery) * anchorEvery : 0;
    const unsigned: Record<string, unknown> = {
      format: 'coffer-audit-digest/2',
      chain: CHAIN,
      batch,
      firstSeq: first,
      lastSeq: last.seq,
      lastEntryHash: last.hash.toString('hex'),
      object,
      objectSha256: sha256(body),
      previousDigestSha256: previous ? sha256(previous) : null,
      plannedAt: '2026-01-01T00:00:00.000Z',
      keyName: KEY,
      checkpoint: checkpointSeq ? anchor(entries[checkpointSeq - 1], signer) : null,
      publicKeys: [signer.published],
    };
    const digest: Buffer = Buffer.from(canonicalJson({ ...unsigned, signature: signer.sign(Buffer.from(canonicalJson(unsigned))) }));
    files.push({ name: `digests/${batch}.json`, bytes: digest });
    previous = digest;
  }
  return files;
}

function anchor(entry: ChainedEntry, signer: ReturnType<typeof keyPair>): AuditAnchor {
  return {
    format: 'coffer-audit-anchor/1',
    chain: CHAIN,
    seq: entry.seq,
    hash: entry.hash.toString('hex'),
    signedAt: '2026-01-01T00:01:00.000Z',
    keyName: KEY,
    keyVersion: 1,
    signature: signer.sign(checkpointData(CHAIN, entry.seq, entry.hash)),
  };
}

function flipByte(files: OfflineFile[], name: string, at = 0.5): OfflineFile[] {
  return files.map((f) => {
    if (f.name !== name) return f;
    const bytes = Buffer.from(f.bytes);
    bytes[Math.floor(bytes.length * at)] ^= 0x01;
    return { name: f.name, bytes };
  });
}

describe('offline verifier: an audit log checked with nothing but its files and the public keys', () => {
  const signer = keyPair();
  const entries = chain(23);
  const log = delivered(entries, 5, signer, 4);

  test('a delivered log verifies with the pinned keys, every entry signed', () => {
    const result = verifyOffline(log, [signer.published]);
    assert.deepEqual(result, { chain: CHAIN, entries: 23, digests: 5, keysFrom: 'pinned', valid: true, checkedThrough: 23, checkpoints: 5, signedThrough: 23 });
  });

  test("without pinned keys, the digests' own keys are used (trust on first use), and the answer says so", () => {
    assert.equal(verifyOffline(log).keysFrom, 'digests');
    assert.equal(verifyOffline(log).valid, true);
  });

  test('one byte changed in an entries object is caught by its digest, at the batch\'s first entry', () => {
    const result = verifyOffline(flipByte(log, 'entries/11-15.ndjson.gz'), [signer.published]);
    assert.equal(result.valid, false);
    assert.equal(result.firstBadSequence, 11);
    assert.equal(result.anchor, 'digests/3.json');
  });

  test('one byte changed anywhere in a digest is caught', () => {
    for (const at of [0.1, 0.3, 0.5, 0.7, 0.95]) {
      const result = verifyOffline(flipByte(log, 'digests/2.json', at), [signer.published]);
      assert.equal(result.valid, false, `byte at ${at}: ${JSON.stringify(result)}`);
      assert.ok(result.firstBadSequence! <= 10, `byte at ${at}: ${JSON.stringify(result)}`);
    }
  });

  test('a log rebuilt from genesis and re-signed with another key is refused against the pinned keys', () => {
    const forger = keyPair();
    const rebuilt = delivered(chain(23, CHAIN, '.forged'), 5, forger, 4);
    assert.equal(verifyOffline(rebuilt).valid, true, 'self-consistent: only pinned keys tell');
    const result = verifyOffline(rebuilt, [signer.published]);
    assert.deepEqual([result.valid, result.firstBadSequence, result.anchor], [false, 1, 'digests/1.json']);
    assert.match(result.reason!, /invalid signature/);
  });

  test('a missing digest, a missing tail and an entry of another chain are reported', () => {
    const noDigest = verifyOffline(log.filter((f) => f.name !== 'digests/3.json'), [signer.published]);
    assert.deepEqual([noDigest.valid, noDigest.firstBadSequence], [false, 11]);
    const noTail = verifyOffline(log.filter((f) => f.name !== 'entries/21-23.ndjson.gz'), [signer.published]);
    assert.deepEqual([noTail.valid, noTail.firstBadSequence, noTail.anchor], [false, 21, 'digests/5.json']);
    const foreign = verifyOffline(delivered(chain(5, 'another-chain'), 5, signer), [signer.published]);
    assert.deepEqual([foreign.valid, foreign.firstBadSequence], [false, 1]);
  });

  test('an NDJSON export (newest first) verifies against checkpoint anchors; a deleted tail is caught by the anchor', () => {
    const exported = `${[...entries].reverse().map((e) => JSON.stringify(publicEntry(e))).join('\n')}\n`;
    const anchors = [8, 20].map((seq) => ({ name: `anchors/${seq}.json`, bytes: Buffer.from(canonicalJson(anchor(entries[seq - 1], signer))) }));
    const ok = verifyOffline([{ name: 'export.ndjson', bytes: Buffer.from(exported) }, ...anchors], [signer.published]);
    assert.deepEqual([ok.valid, ok.checkedThrough, ok.signedThrough], [true, 23, 20]);

    const cut = `${entries.slice(0, 15).reverse().map((e) => JSON.stringify(publicEntry(e))).join('\n')}\n`;
    const result = verifyOffline([{ name: 'export.ndjson', bytes: Buffer.from(cut) }, ...anchors], [signer.published]);
    assert.deepEqual([result.valid, result.firstBadSequence, result.anchor], [false, 16, 'anchors/20.json']);

    const alone = verifyOffline([{ name: 'export.ndjson', bytes: Buffer.from(exported) }], [signer.published]);
    assert.equal(alone.valid, false, 'nothing signed covers an export on its own');
    assert.match(alone.reason!, /no valid digest or checkpoint/);
  });

  test('an export carrying its checkpoint and keys as lines of its own (coffer audit:export) verifies alone; one byte changed does not', () => {
    const lines = [...entries].reverse().map((e) => JSON.stringify(publicEntry(e)));
    lines.push(canonicalJson(anchor(entries[19], signer)));
    lines.push(JSON.stringify({ format: EXPORT_KEYS_FORMAT, chain: CHAIN, algorithm: 'ed25519', keys: [signer.published] }));
    const file = { name: 'export.ndjson', bytes: Buffer.from(`${lines.join('\n')}\n`) };
    const alone = verifyOffline([file]);
    assert.deepEqual([alone.valid, alone.chain, alone.keysFrom, alone.checkedThrough, alone.signedThrough, alone.checkpoints], [true, CHAIN, 'export', 23, 20, 1]);
    assert.equal(verifyOffline([file], [signer.published]).keysFrom, 'pinned');
    assert.equal(verifyOffline([file], [keyPair().published]).valid, false, 'pinned keys of another signer refuse it');
    const text = file.bytes.toString();
    const anchorLine = text.indexOf('coffer-audit-anchor/1');
    const offsets = [
      Math.floor(text.length * 0.05), // an entry
      Math.floor(text.length * 0.5),
      text.indexOf('"hash":"', anchorLine) + 12, // the checkpoint's hash
      text.indexOf('"signature":"', anchorLine) + 30, // its signature
      text.indexOf('"publicKey":"', text.indexOf(EXPORT_KEYS_FORMAT)) + 20, // the key
    ];
    for (const at of offsets) {
      const bytes = Buffer.from(file.bytes);
      bytes[at] ^= 0x01;
      assert.equal(verifyOffline([{ name: file.name, bytes }]).valid, false, `byte ${at}: ${text.slice(at - 10, at + 10)}`);
    }
  });
});
