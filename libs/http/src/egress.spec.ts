import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import { createServer, get, type Agent, type Server } from 'node:http';
import { get as httpsGet } from 'node:https';
import { EgressPolicy, EgressRefused, refusedClass } from './egress';

test('every refused class is recognized, IPv4-mapped IPv6 forms as their IPv4 address; public addresses are not refused', () => {
  const cases: [string, ReturnType<typeof refusedClass>][] = [
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['::1', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['169.254.169.254', 'link-local'],
    ['fe80::1', 'link-local'],
    ['febf::1', 'link-local'],
    ['fc00::1', 'unique-local'],
    ['fd12:3456::1', 'unique-local'],
    ['100.64.0.1', 'carrier-grade-nat'],
    ['100.127.255.255', 'carrier-grade-nat'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['ff02::1', 'multicast'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['::', 'unspecified'],
    ['240.0.0.1', 'reserved'],
    ['255.255.255.255', 'reserved'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['0:0:0:0:0:FFFF:A9FE:A9FE', 'link-local'],
    ['::ffff:10.1.2.3', 'private'],
    ['::ffff:192.168.0.1', 'private'],
    ['::ffff:100.64.0.1', 'carrier-grade-nat'],
    ['::ffff:0.0.0.0', 'unspecified'],
    ['[::1]', 'loopback'],
    ['fe80::1%eth0', 'link-local'],
    ['8.8.8.8', undefined],
    ['172.32.0.1', undefined],
    ['172.15.255.255', undefined],
    ['100.128.0.1', undefined],
    ['169.255.0.1', undefined],
    ['11.0.0.1', undefined],
    ['223.255.255.255', undefined],
    ['2606:4700:4700::1111', undefined],
    ['::ffff:8.8.8.8', undefined],
  ];
  for (const [address, expected] of cases) assert.equal(refusedClass(address), expected, address);
});

test('the allow-list lets a refused host through by name, by address or by CIDR, and nothing else', () => {
  const policy = new EgressPolicy(' minio , 10.0.0.5,192.168.10.0/24, fd00:1::/32 ,::1, S3.LAN.example.');
  assert.equal(policy.refusal('minio', '172.18.0.4'), undefined, 'by name: whatever it resolves to');
  assert.equal(policy.refusal('s3.lan.example', '10.9.9.9'), undefined, 'names compare case-insensitively, root dot dropped');
  assert.equal(policy.refusal('10.0.0.5', '10.0.0.5'), undefined);
  assert.equal(policy.refusal('a.example', '::ffff:10.0.0.5'), undefined, 'an allowed IPv4 address in its mapped form');
  assert.equal(policy.refusal('192.168.10.77', '192.168.10.77'), undefined);
  assert.equal(policy.refusal('fd00:1:ffff::1', 'fd00:1:ffff::1'), undefined);
  assert.equal(policy.refusal('[::1]', '::1'), undefined);

  for (const [host, address, refused] of [
    ['10.0.0.6', '10.0.0.6', 'private'],
    ['192.168.11.1', '192.168.11.1', 'private'],
    ['fd00:2::1', 'fd00:2::1', 'unique-local'],
    ['127.0.0.1', '127.0.0.1', 'loopback'],
    ['minio.example', '172.18.0.4', 'private'],
  ] as const) {
    const refusal = policy.refusal(host, address);
    assert.ok(refusal instanceof EgressRefused, host);
    assert.equal(refusal.refused, refused, host);
    assert.match(refusal.message, /OUTBOUND_ALLOWED_HOSTS/);
  }
  assert.equal(new EgressPolicy('').refusal('example.com', '93.184.215.14'), undefined, 'a public address needs no allowing');
});

/** A resolver standing for DNS: each name answers the next of its lists, the last one from then on. */
function fakeDns(answers: Record<string, string[][]>) {
  const calls: string[] = [];
  const resolve = (hostname: string, _options: unknown, callback: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => {
    calls.push(hostname);
    const lists = answers[hostname];
    if (!lists) return callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), []);
    const list = lists.length > 1 ? lists.shift()! : lists[0];
    callback(null, list.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })));
  };
  return { resolve, calls };
}

const refusedAs = (refused: string) => (error: unknown) => error instanceof EgressRefused && error.refused === refused;

test('names: single-label ones are refused before any lookup unless allowed by name; every resolved address is checked', async () => {
  const dns = fakeDns({
    postgres: [['172.18.0.2']],
    'public.example': [['93.184.215.14', '2606:2800:21f:cb07:6820:80da:af6b:8b2c']],
    'mixed.example': [['93.184.215.14', '10.1.1.1']],
    'loopback.example': [['127.0.0.1']],
    'mapped.example': [['::ffff:169.254.169.254']],
  });
  const policy = new EgressPolicy('postgres', dns.resolve);
  for (const name of ['openbao', 'REDIS', 'minio-init', 'localhost', 'localhost.', 'worker']) {
    await assert.rejects(policy.check(name), refusedAs('internal-name'), name);
  }
  assert.deepEqual(dns.calls, [], 'no lookup for a refused name');
  await policy.check('postgres');
  await policy.check('public.example');
  await assert.rejects(policy.check('mixed.example'), refusedAs('private'), 'one internal address among public ones');
  await assert.rejects(policy.check('loopback.example'), refusedAs('loopback'));
  await assert.rejects(policy.check('mapped.example'), refusedAs('link-local'));
  await assert.rejects(policy.check('127.0.0.1'), refusedAs('loopback'));
  await assert.rejects(policy.check('nowhere.example'), /ENOTFOUND/, 'a lookup failure is not a refusal');
  // The system resolver: `localhost` is refused by its name even when its address is allowed.
  await assert.rejects(new EgressPolicy('127.0.0.1').check('localhost'), refusedAs('internal-name'));
  await new EgressPolicy('localhost').check('localhost');
});

describe('the agents (a real HTTP server on loopback)', () => {
  let server: Server;
  let port: number;
  let connections = 0;

  before(async () => {
    server = createServer((_request, response) => response.end('reached'));
    server.on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });

  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const fetchVia = (agent: Agent, url: string) =>
    new Promise<string>((resolve, reject) => {
      get(url, { agent }, (response) => {
        let body = '';
        response.on('data', (chunk) => (body += chunk)).on('end', () => resolve(body));
      }).once('error', reject);
    });

  test('an address in the URL is refused before connecting, in every spelling; allowed, it is reached', async () => {
    const refusing = new EgressPolicy('');
    for (const host of ['127.0.0.1', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', '[::1]', '0.0.0.0']) {
      await assert.rejects(fetchVia(refusing.httpAgent, `http://${host}:${port}/`), (e: unknown) => e instanceof EgressRefused, host);
    }
    await assert.rejects(
      new Promise((resolve, reject) => httpsGet(`https://169.254.169.254:${port}/`, { agent: refusing.httpsAgent }, resolve).once('error', reject)),
      refusedAs('link-local'),
    );
    assert.equal(connections, 0, 'nothing reached the server');
    assert.equal(await fetchVia(new EgressPolicy('127.0.0.1').httpAgent, `http://127.0.0.1:${port}/`), 'reached');
    assert.equal(await fetchVia(new EgressPolicy('127.0.0.0/8').httpAgent, `http://127.0.0.1:${port}/`), 'reached');
  });

  test('a name is connected to at the address its checked lookup gave, and refused when that address is internal', async () => {
    // bucket.example.test exists only in the fake DNS: reaching the server proves the connection used the policy's lookup.
    const before = connections;
    const refusing = new EgressPolicy('', fakeDns({ 'bucket.example.test': [['127.0.0.1']] }).resolve);
    await assert.rejects(fetchVia(refusing.httpAgent, `http://bucket.example.test:${port}/`), refusedAs('loopback'));
    assert.equal(connections, before);
    const allowing = new EgressPolicy('127.0.0.1', fakeDns({ 'bucket.example.test': [['127.0.0.1']] }).resolve);
    assert.equal(await fetchVia(allowing.httpAgent, `http://bucket.example.test:${port}/`), 'reached');
  });

  test('DNS rebinding: a name public when checked and loopback when connected is refused at connect time', async () => {
    const before = connections;
    const dns = fakeDns({ 'rebind.example.test': [['93.184.215.14'], ['127.0.0.1']] });
    const policy = new EgressPolicy('', dns.resolve);
    await policy.check('rebind.example.test');
    await assert.rejects(fetchVia(policy.httpAgent, `http://rebind.example.test:${port}/`), refusedAs('loopback'));
    assert.deepEqual(dns.calls, ['rebind.example.test', 'rebind.example.test'], 'the connection looked the name up again, through the policy');
    assert.equal(connections, before, 'nothing reached the server');
  });
});
