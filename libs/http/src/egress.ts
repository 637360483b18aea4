import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions, type LookupOptions } from 'node:dns';
import * as http from 'node:http';
import * as https from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Why an outbound connection is refused: its address is of one of these classes, or its host is
 * a single-label name (a compose service, `localhost`, a name the local resolver completes).
 */
export type RefusedClass =
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'unique-local'
  | 'carrier-grade-nat'
  | 'multicast'
  | 'unspecified'
  | 'reserved'
  | 'internal-name';

const DESCRIPTIONS: Record<RefusedClass, string> = {
  loopback: 'a loopback address',
  private: 'a private (RFC 1918) address',
  'link-local': 'a link-local address',
  'unique-local': 'a unique-local (fc00::/7) address',
  'carrier-grade-nat': 'a carrier-grade NAT (100.64.0.0/10) address',
  multicast: 'a multicast address',
  unspecified: 'an unspecified address',
  reserved: 'a reserved (240.0.0.0/4) address',
  'internal-name': 'a single-label name (an internal or compose service name)',
};

const RANGES: [Exclude<RefusedClass, 'internal-name'>, string, number, 'ipv4' | 'ipv6'][] = [
  ['loopback', '127.0.0.0', 8, 'ipv4'],
  ['loopback', '::1', 128, 'ipv6'],
  ['private', '10.0.0.0', 8, 'ipv4'],
  ['private', '172.16.0.0', 12, 'ipv4'],
  ['private', '192.168.0.0', 16, 'ipv4'],
  ['link-local', '169.254.0.0', 16, 'ipv4'],
  ['link-local', 'fe80::', 10, 'ipv6'],
  ['unique-local', 'fc00::', 7, 'ipv6'],
  ['carrier-grade-nat', '100.64.0.0', 10, 'ipv4'],
  ['multicast', '224.0.0.0', 4, 'ipv4'],
  ['multicast', 'ff00::', 8, 'ipv6'],
  ['unspecified', '0.0.0.0', 8, 'ipv4'],
  ['unspecified', '::', 128, 'ipv6'],
  // 255.255.255.255 (broadcast) included.
  ['reserved', '240.0.0.0', 4, 'ipv4'],
];

const CLASSES = RANGES.map(([refused, network, prefix, type]) => {
  const list = new BlockList();
  list.addSubnet(network, prefix, type);
  return { refused, list };
});

const family = (ip: string) => (isIP(ip) === 4 ? 'ipv4' : 'ipv6');

/** An outbound connection the policy refused; `message` names the class and the setting, never a URL. */
export class EgressRefused extends Error {
  readonly code = 'ERR_EGRESS_REFUSED';
  constructor(
    readonly host: string,
    readonly refused: RefusedClass,
    address?: string,
  ) {
    const target = address && address !== host ? `${host} (${address})` : host;
    super(`outbound connection to ${target} refused: ${DESCRIPTIONS[refused]}; an operator may allow it in OUTBOUND_ALLOWED_HOSTS`);
  }
}

/** The class that makes `address` (an IP address, IPv4-mapped IPv6 as its IPv4) refused, if any. */
export function refusedClass(address: string): Exclude<RefusedClass, 'internal-name'> | undefined {
  const ip = unmapped(address);
  return CLASSES.find(({ list }) => list.check(ip, family(ip)))?.refused;
}

/** `::ffff:a.b.c.d` (in any spelling) as `a.b.c.d`; anything else as it is, zone and brackets dropped. */
function unmapped(address: string): string {
  const ip = address.replace(/^\[(.*)\]$/, '$1').split('%')[0];
  if (isIP(ip) !== 6) return ip;
  // The WHATWG serializer spells an IPv6 address one way: lower-case hex, zeros compressed.
  const mapped = /^\[::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})\]$/.exec(new URL(`http://[${ip}]`).hostname);
  if (!mapped) return ip;
  const [high, low] = [parseInt(mapped[1], 16), parseInt(mapped[2], 16)];
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}

/** A host as a URL or a connection names it: lower case, no brackets, no root dot. */
function normalized(host: string): string {
  return host.toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
}

type Resolver = (hostname: string, options: LookupAllOptions, callback: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void;

/**
 * The egress policy of every outbound call Coffer makes on someone else's say (an org's audit
 * bucket) or to the internet (alert webhooks, ACME): no loopback, private, link-local,
 * unique-local, CGNAT, multicast, unspecified or reserved address, and no single-label name,
 * unless OUTBOUND_ALLOWED_HOSTS names the host, the address or a CIDR holding it. It is enforced
 * where connections are made (the agents below), on the addresses the connection then uses: a
 * name that resolves to a public address when checked and to an internal one when connected
 * (DNS rebinding) is refused at connect time.
 */
export class EgressPolicy {
  private readonly allowedNames = new Set<string>();
  private readonly allowedAddresses = new BlockList();
  /** Agents for outbound calls: every connection they make goes through this policy. */
  readonly httpAgent: http.Agent;
  readonly httpsAgent: https.Agent;

  /** `allowed` is OUTBOUND_ALLOWED_HOSTS; `resolve` is the system resolver but in tests. */
  constructor(
    allowed: string,
    private readonly resolve: Resolver = dnsLookup,
  ) {
    for (const entry of allowed.split(',').map((e) => normalized(e.trim())).filter(Boolean)) {
      const [network, prefix] = entry.split('/');
      if (!isIP(network)) this.allowedNames.add(entry);
      else if (prefix === undefined) this.allowedAddresses.addAddress(unmapped(network), family(unmapped(network)));
      else this.allowedAddresses.addSubnet(network, Number(prefix), family(network));
    }
    this.httpAgent = new EgressHttpAgent(this);
    this.httpsAgent = new EgressHttpsAgent(this);
  }

  /** The refusal of a connection to `host` at `address` (one of the addresses its name resolved to). */
  refusal(host: string, address: string): EgressRefused | undefined {
    const name = normalized(host);
    if (this.allowedNames.has(name)) return undefined;
    const ip = unmapped(address);
    if (this.allowedAddresses.check(ip, family(ip))) return undefined;
    const refused = refusedClass(ip);
    return refused && new EgressRefused(name, refused, ip);
  }

  /**
   * dns.lookup as net.connect calls it, refusing a single-label name and any name with one
   * refused address among those it resolves to: the connection uses only what was checked here.
   */
  readonly lookup: LookupFunction = (hostname: string, options: LookupOptions, callback) => {
    const name = normalized(hostname);
    if (isIP(name)) {
      const refused = this.refusal(name, name);
      if (refused) return callback(refused, '');
    } else if (!name.includes('.') && !this.allowedNames.has(name)) {
      return callback(new EgressRefused(name, 'internal-name'), '');
    }
    this.resolve(name, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, '');
      const refused = addresses.map((a) => this.refusal(name, a.address)).find(Boolean);
      if (refused) return callback(refused, '');
      if (options.all) callback(null, addresses);
      else callback(null, addresses[0].address, addresses[0].family);
    });
  };

  /** Resolves `host` as a connection to it would, and rejects with EgressRefused what it would refuse. */
  check(host: string): Promise<void> {
    return new Promise((resolve, reject) => this.lookup(host, { all: true }, (error) => (error ? reject(error) : resolve())));
  }

  /**
   * What a connection to `options.host` must fail with, before any lookup: net.connect does not
   * call `lookup` for an IP address, so an agent checks those itself.
   */
  literalRefusal(options: http.ClientRequestArgs): EgressRefused | undefined {
    const host = normalized(options.host ?? options.hostname ?? 'localhost');
    return isIP(host) ? this.refusal(host, host) : undefined;
  }
}

/** An http.Agent of the policy: its lookup for names, its address check for IP literals. */
export class EgressHttpAgent extends http.Agent {
  constructor(
    private readonly policy: EgressPolicy,
    options: http.AgentOptions = {},
  ) {
    super({ ...options, lookup: policy.lookup });
  }

  override createConnection(options: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void) {
    const refused = this.policy.literalRefusal(options);
    if (!refused) return super.createConnection(options, callback);
    callback?.(refused, undefined as never);
    return undefined;
  }
}

/** An https.Agent of the policy (`options`: TLS settings such as a CA to trust). */
export class EgressHttpsAgent extends https.Agent {
  constructor(
    private readonly policy: EgressPolicy,
    options: https.AgentOptions = {},
  ) {
    super({ ...options, lookup: policy.lookup });
  }

  override createConnection(options: https.RequestOptions, callback?: (err: Error | null, stream: Duplex) => void) {
    const refused = this.policy.literalRefusal(options);
    if (!refused) return super.createConnection(options, callback);
    callback?.(refused, undefined as never);
    return undefined;
  }
}
