import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import * as fc from 'fast-check';
import { AuditService } from '@coffer/audit';
import { ERROR_STATUS } from '@coffer/http';
import { LOGGER, Logger } from '@coffer/logging';
import { OrgRegistry } from '@coffer/tenancy';
import type { OrgClient, TestUser } from '../support/client';
import { connectToOrgAsOwner } from '../support/test-env';
import { TestWorld } from '../support/world';

/**
 * Issue 15, item 1: a property-based fuzz of every operation of the OpenAPI document, read at run
 * time from the live API (NestJS on Fastify over HTTPS, PostgreSQL, Redis), so that a route added
 * later is fuzzed without a test of its own. For each operation fast-check generates requests from
 * the document's parameter and body schemas, and hostile variants of them: path parameters (NUL
 * and control characters, overlong, unicode, traversal, numeric overflow, broken percent-encoding),
 * query strings (wrong types, repeated, unknown), bodies (wrong types, deep nesting, huge strings,
 * unknown fields, prototype keys, invalid JSON, wrong content types and codings), uploads (small
 * bodies, any media type), and credentials (none, malformed, the platform admin, org A's admin,
 * security officer and member, org B's admin on A's routes, an expired and a revoked key).
 *
 * Properties of every answer: never a 5xx (503 kms_unavailable and database_busy aside); every
 * 4xx is `{error: {code, message, requestId}}` with a documented code of that status, the request
 * id of the response, and HSTS (every answer over TLS has it); no answer to an org's credentials or
 * to none holds another org's data (distinctive markers seeded in both orgs, unless the request
 * itself named them). Afterwards nothing is half-written: no org left provisioning, every chain
 * (each org's and the control plane's) verifies, every listed package version downloads whole,
 * no upload row left open, no stored object without its row, every key belongs to a user.
 *
 * Seed: FUZZ_SEED (fixed by default, printed at start); FUZZ_RUNS runs per operation; FUZZ_OP
 * limits the run to the operations whose `METHOD /path` contains it.
 */

type Json = Record<string, any>;
type Group = 'a' | 'b' | 'anon' | 'platform';

const SEED = Number(process.env.FUZZ_SEED ?? 20_251_115);
const RUNS_PER_OPERATION = Number(process.env.FUZZ_RUNS ?? 100);
const ONLY = process.env.FUZZ_OP;
/** Per operation: generation and shrinking stop there (the failure found so far is reported). */
const OPERATION_TIME_LIMIT_MS = 60_000;
const METHODS = ['get', 'put', 'post', 'delete', 'patch'];
const PACKAGE_MAX_BYTES = 2048;

/** One generated request, as sent byte for byte (the path already percent-encoded). */
interface FuzzRequest {
  operation: string;
  method: string;
  path: string;
  who: string;
  headers: Record<string, string>;
  body?: Buffer;
  chunked?: boolean;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

// ---------------------------------------------------------------------------------------------
// Hostile values

/** Decoded values hostile to a path segment, a query value or a JSON string. */
const HOSTILE_STRINGS = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\u0001',
  '\t',
  '\r\n',
  '\u001b[2J',
  '\u007f',
  '\u0085',
  '\u009f',
  'a'.repeat(129),
  'a'.repeat(1024),
  'a'.repeat(1025),
  'a'.repeat(4096),
  'é',
  'e\u0301',
  '日本語',
  '😀',
  '\u202e',
  '\u200b',
  '\ufeff',
  'Ａ',
  '\ud800',
  '\udfff',
  '\uffff',
  '..',
  '.',
  '../..',
  '../../../etc/passwd',
  '..\\..\\windows',
  '/',
  'a/b',
  '%',
  '%00',
  '9999999999999999999999',
  '2147483648',
  '2147483647',
  '9007199254740993',
  '-1',
  '0',
  '01',
  '+1',
  '1e0',
  '1e309',
  '1.5',
  '0x10',
  'NaN',
  'Infinity',
  'null',
  'undefined',
  'true',
  '[]',
  '{}',
  "' OR '1'='1",
  '<script>alert(1)</script>',
  '${jndi:ldap://x}',
  '__proto__',
  'constructor',
];

/** Path segments as sent on the wire, not encoded by us: traversal and broken percent-encoding. */
const RAW_SEGMENTS = ['..', '.', '%2e%2e', '%2E%2E%2F..', '..%2F..%2Fetc%2Fpasswd', '%', '%zz', '%C0%AF', '%ED%A0%80', '%FF%FE', '%E2%80%AE', 'a%2Fb', '%5C', '%252e', '%00%00', ';', 'a;b=c'];

/** Any UTF-16 code units: controls, lone surrogates, noncharacters. */
const anyUnits = (maxLength: number) =>
  fc.string({ unit: fc.oneof(fc.integer({ min: 0, max: 0x7f }), fc.integer({ min: 0, max: 0xffff })).map((c) => String.fromCharCode(c)), maxLength });

/** Percent-encodes a value for a path segment or a query value; lone surrogates as UTF-8 of U+FFFD would be: raw bytes instead. */
function encode(value: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    return [...Buffer.from(value, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0').toUpperCase()}`).join('');
  }
}

const numericOverflow = fc.oneof(
  fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map(String),
  fc.double().map(String),
  fc.constantFrom('2147483648', '4294967296', '18446744073709551616', '-2147483649', '1'.repeat(400)),
);

const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
  { weight: 2, arbitrary: anyUnits(40) },
  { weight: 1, arbitrary: numericOverflow },
  { weight: 1, arbitrary: fc.constantFrom(2000, 20_000).map((n) => 'x'.repeat(n)) },
);

/** An encoded hostile path segment: mostly encoded values, sometimes raw bytes. */
const hostileSegment: fc.Arbitrary<string> = fc.oneof({ weight: 4, arbitrary: hostileString.map(encode) }, { weight: 1, arbitrary: fc.constantFrom(...RAW_SEGMENTS) });

/** A value of the wrong type (or a hostile one) for a JSON field. */
const wrongValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.constantFrom(1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, -0, 0.5),
  fc.constant([]),
  fc.constant({}),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 }),
  hostileString,
);

// ---------------------------------------------------------------------------------------------
// Values from the document's schemas

function resolve(schema: Json | undefined, doc: Json): Json {
  let current = schema ?? {};
  for (let i = 0; current.$ref && i < 20; i++) {
    const name = String(current.$ref).replace(/^#\/components\/schemas\//, '');
    current = doc.components?.schemas?.[name] ?? {};
  }
  return current;
}

/**
 * Arbitraries of values valid for a JSON Schema (as far as fast-check can tell: some are not, and
 * are refused, which is fine too). Identifier-like strings (a pattern, an e-mail) come from a few
 * values sampled once per schema with the seed: creations then collide (409) instead of creating
 * an org database per run.
 */
class SchemaValues {
  private readonly pools = new Map<string, fc.Arbitrary<string>>();
  constructor(
    private readonly doc: Json,
    private readonly seed: number,
  ) {}

  value(schemaIn: Json | undefined, depth = 0, name = ''): fc.Arbitrary<unknown> {
    let schema = resolve(schemaIn, this.doc);
    // A field named for an e-mail address gets addresses, whether or not its schema says so.
    if (/e-?mail/i.test(name) && schema.type === 'string' && !schema.format) schema = { ...schema, format: 'email' };
    if (schema.const !== undefined) return fc.constant(schema.const);
    if (Array.isArray(schema.enum) && schema.enum.length) return fc.constantFrom(...schema.enum);
    const alternatives = schema.anyOf ?? schema.oneOf;
    if (Array.isArray(alternatives) && alternatives.length) return fc.oneof(...alternatives.map((s: Json) => this.value(s, depth)));
    if (Array.isArray(schema.allOf) && schema.allOf.length) return this.value(schema.allOf[schema.allOf.length - 1], depth);
    const types: string[] = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
    if (types.length > 1) return fc.oneof(...types.map((type) => this.value({ ...schema, type }, depth)));
    switch (types[0]) {
      case 'string':
        return this.string(schema);
      case 'integer': {
        const min = schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : -1000);
        const max = schema.maximum ?? (schema.exclusiveMaximum !== undefined ? schema.exclusiveMaximum - 1 : Math.max(min, 0) + 100_000);
        return fc.integer({ min: Math.max(min, Number.MIN_SAFE_INTEGER), max: Math.min(max, Number.MAX_SAFE_INTEGER) });
      }
      case 'number':
        return fc.double({ min: schema.minimum ?? -1e6, max: schema.maximum ?? 1e6, noNaN: true });
      case 'boolean':
        return fc.boolean();
      case 'null':
        return fc.constant(null);
      case 'array':
        return depth > 3 ? fc.constant([]) : fc.array(this.value(schema.items, depth + 1), { minLength: schema.minItems ?? 0, maxLength: Math.min(schema.maxItems ?? 4, 4) });
      case 'object': {
        if (depth > 3) return fc.constant({});
        const properties: Record<string, Json> = schema.properties ?? {};
        const required: string[] = schema.required ?? [];
        const model = Object.fromEntries(Object.entries(properties).map(([key, property]) => [key, this.value(property, depth + 1, key)]));
        return fc.record(model, { requiredKeys: required.filter((r) => r in model) });
      }
      default:
        return fc.jsonValue({ maxDepth: 2 });
    }
  }

  private string(schema: Json): fc.Arbitrary<string> {
    const minLength = schema.minLength ?? 0;
    const maxLength = schema.maxLength ?? Math.max(minLength, 40);
    if (schema.format === 'date-time') {
      return fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('2200-01-01T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString());
    }
    if (schema.format === 'uri') {
      // Loopback and private addresses (refused by the egress policy unless allowed, refused to connect if allowed), a name that does not resolve.
      return fc.constantFrom('http://127.0.0.1:1', 'https://127.0.0.1:9', 'http://localhost:1', 'http://[::1]:1', 'http://10.0.0.1', 'http://169.254.169.254', 'https://s3.invalid', 'ftp://127.0.0.1', 'http://127.0.0.1:1/x?y');
    }
    if (schema.pattern || schema.format === 'email') {
      const key = JSON.stringify([schema.pattern, schema.format, minLength, maxLength]);
      let pool = this.pools.get(key);
      if (!pool) {
        let source: fc.Arbitrary<string>;
        try {
          // fast-check's addresses follow RFC 5322 to its corners; the API takes the common form.
          source = schema.format === 'email' ? fc.emailAddress().filter((e) => /^[a-z0-9_+-]+(\.[a-z0-9_+-]+)*@([a-z0-9][a-z0-9-]*\.)+[a-z]{2,}$/i.test(e)) : fc.stringMatching(new RegExp(schema.pattern));
          fc.sample(source, 1);
        } catch {
          source = fc.string({ minLength, maxLength: Math.min(maxLength, 40) });
        }
        const values = fc.sample(source.filter((s) => s.length >= minLength && s.length <= maxLength), { seed: this.seed, numRuns: 4 });
        pool = fc.constantFrom(...values);
        this.pools.set(key, pool);
      }
      return pool;
    }
    return fc.string({ minLength, maxLength: Math.min(maxLength, 64), unit: fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789 -_.') }, { weight: 1, arbitrary: fc.constantFrom('é', '日', '😀', 'Ω') }) });
  }
}

// ---------------------------------------------------------------------------------------------
// Bodies

const JSON_TYPES = ['application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON'];
const OTHER_TYPES = [
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=utf-16',
  'application/vnd.api+json',
  'application/xml',
  'application/octet-stream',
  'a',
  'application/json;;;',
  `application/${'x'.repeat(300)}`,
  'text/plain; charset="\u00e9"',
];

const nested = (depth: number, kind: 'array' | 'object') => (kind === 'array' ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth));

const INVALID_JSON = ['{', '{"a":}', "{'a':1}", '\u0000', '\ufeff{}', 'NaN', '{"a":1}garbage', '{"a":1,}', '{"a":"\\u00"}', '"\\ud800"', '1e99999', '[1,2', '{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"polluted":1}}}'];

/** One dimension of a request: the values a well-formed request has, and hostile ones. */
interface Dimension<T> {
  valid: fc.Arbitrary<T>;
  hostile: fc.Arbitrary<T>;
}

interface BodyPart {
  text: Buffer | undefined;
  type: string | undefined;
  encoding?: string;
  chunked?: boolean;
}

/** A JSON route's body: valid JSON of the schema, or every kind of bad one (text, type, coding). */
function jsonBodies(valid: fc.Arbitrary<unknown>): Dimension<BodyPart> {
  const asObject = valid.map((v) => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {}));
  const badText: fc.Arbitrary<Buffer | undefined> = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.tuple(asObject, fc.nat(), wrongValue).map(([object, index, value]) => {
        const keys = Object.keys(object);
        const copy: Json = { ...object };
        copy[keys.length ? keys[index % keys.length] : 'x'] = value;
        return Buffer.from(JSON.stringify(copy));
      }),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(asObject, fc.oneof(fc.constantFrom('extra', 'isAdmin', 'role', 'orgId', '__proto__', 'constructor', ''), fc.string({ maxLength: 10 })), fc.jsonValue({ maxDepth: 2 }))
        .map(([object, key, value]) => Buffer.from(JSON.stringify({ ...object, [key]: value }))),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(asObject, fc.nat(), fc.constantFrom(10, 100, 1000, 10_000, 100_000), fc.constantFrom<'array' | 'object'>('array', 'object')).map(([object, index, depth, kind]) => {
        const keys = Object.keys(object);
        if (!keys.length) return Buffer.from(nested(depth, kind));
        const json = JSON.stringify({ ...object, [keys[index % keys.length]]: '\u0001NESTED\u0001' });
        return Buffer.from(json.replace('"\\u0001NESTED\\u0001"', nested(depth, kind)));
      }),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(asObject, fc.nat(), fc.constantFrom(10_000, 200_000, 900_000, 1_100_000)).map(([object, index, size]) => {
        const keys = Object.keys(object);
        return Buffer.from(JSON.stringify({ ...object, [keys.length ? keys[index % keys.length] : 'x']: 'x'.repeat(size) }));
      }),
    },
    { weight: 1, arbitrary: fc.constantFrom('null', '1', '"x"', '[]', 'true', '[{}]', '""').map((t) => Buffer.from(t)) },
    { weight: 2, arbitrary: fc.constantFrom(...INVALID_JSON).map((t) => Buffer.from(t)) },
    // Bytes that are not UTF-8 inside a JSON string.
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 8 }).map((bytes) => Buffer.concat([Buffer.from('{"name":"'), Buffer.from(bytes), Buffer.from('"}')])) },
    { weight: 1, arbitrary: fc.constant(undefined) },
  );
  const goodText = valid.map((v) => Buffer.from(JSON.stringify(v)));
  const goodType = fc.constantFrom(...JSON_TYPES);
  const badType = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...OTHER_TYPES) }, { weight: 1, arbitrary: fc.constant(undefined) });
  return {
    valid: fc.record({ text: goodText, type: goodType, encoding: fc.constant(undefined), chunked: fc.boolean() }),
    hostile: fc.oneof(
      { weight: 6, arbitrary: fc.record({ text: badText, type: goodType, encoding: fc.constant(undefined), chunked: fc.boolean() }) },
      { weight: 2, arbitrary: fc.record({ text: fc.oneof(goodText, badText), type: badType, encoding: fc.constant(undefined), chunked: fc.boolean() }) },
      { weight: 1, arbitrary: fc.record({ text: goodText, type: goodType, encoding: fc.constantFrom('gzip', 'br', 'identity', 'x-unknown', 'gzip, identity'), chunked: fc.boolean() }) },
    ),
  };
}

/** A body sent where none is taken: none, or anything. */
const strayBodies: Dimension<BodyPart | undefined> = {
  valid: fc.constant(undefined),
  hostile: fc.record({
    text: fc.oneof(fc.constantFrom('{}', '{"a":1}', 'garbage', '', '{').map((t) => Buffer.from(t)), fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b))),
    type: fc.option(fc.constantFrom(...JSON_TYPES, ...OTHER_TYPES), { nil: undefined }),
    encoding: sometimes(fc.constantFrom('gzip', 'identity'), 20),
    chunked: fc.boolean(),
  }),
};

/** An upload's raw body: small, any bytes, a media type or none, declared or chunked; or too large, an odd type, a coding. */
const uploadBodies: Dimension<BodyPart> = {
  valid: fc.record({
    text: fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
    type: fc.option(fc.constantFrom('text/plain', 'application/octet-stream', 'application/pdf', 'text/markdown; charset=utf-8', 'application/json', 'image/svg+xml'), { freq: 8, nil: undefined }),
    encoding: fc.constant(undefined),
    chunked: fc.boolean(),
  }),
  hostile: fc.record({
    text: fc.oneof({ weight: 3, arbitrary: fc.uint8Array({ maxLength: 600 }) }, { weight: 1, arbitrary: fc.uint8Array({ minLength: PACKAGE_MAX_BYTES - 4, maxLength: PACKAGE_MAX_BYTES + 600 }) }).map((b) => Buffer.from(b)),
    type: fc.oneof(
      { weight: 2, arbitrary: fc.constantFrom(...OTHER_TYPES, 'text/plain; x="y z"', 'text/', '/', 'text/plain; charset=', '*/*', 'text/html') },
      { weight: 1, arbitrary: fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 300 }) },
      { weight: 1, arbitrary: fc.string({ unit: fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 20 }) },
    ),
    encoding: sometimes(fc.constantFrom('gzip', 'identity', 'br'), 30),
    chunked: fc.boolean(),
  }),
};

/** `arbitrary` in `percent` % of the runs, undefined otherwise. */
function sometimes<T>(arbitrary: fc.Arbitrary<T>, percent: number): fc.Arbitrary<T | undefined> {
  return fc.oneof({ weight: 100 - percent, arbitrary: fc.constant(undefined) }, { weight: percent, arbitrary });
}

/** A failure, readable: the seed and path to replay, the shrunk request (long values cut), the property's error. */
function failureReport(details: fc.RunDetails<[FuzzRequest]>): string {
  const cut = (text: string, max = 300) => (text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text);
  const request = details.counterexample?.[0];
  const shown = request && {
    method: request.method,
    path: cut(request.path),
    who: request.who,
    headers: Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k, cut(v, 120)])),
    body: request.body && cut(JSON.stringify(request.body.toString('latin1')), 400),
    chunked: request.chunked,
  };
  const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
  return [
    `failed after ${details.numRuns} runs, shrunk ${details.numShrinks} times; replay: { seed: ${details.seed}, path: "${details.counterexamplePath}" }`,
    `request: ${JSON.stringify(shown, null, 1)}`,
    `error: ${cut(error, 2000)}`,
  ].join('\n');
}

/** `200×3 404×12`: how many answers of each status. */
function histogram(counts: Map<number, number>): string {
  return [...counts.entries()].sort(([x], [y]) => x - y).map(([status, n]) => `${status}×${n}`).join(' ');
}

/** Splits a body into pieces for chunked transfer. */
function pieces(body: Buffer): Buffer[] {
  const size = Math.max(1, Math.ceil(body.length / 3));
  const out: Buffer[] = [];
  for (let at = 0; at < body.length; at += size) out.push(body.subarray(at, at + size));
  return out;
}

// ---------------------------------------------------------------------------------------------

describe('fuzz: every operation of the live OpenAPI document, against the real API (HTTPS, PostgreSQL, Redis)', () => {
  let world: TestWorld;
  let doc: Json;
  let agent: Agent;
  let a: OrgClient;
  let b: OrgClient;
  const users: Record<string, TestUser> = {};
  /** Bearer tokens by credential name; `group` says whose data the answer may hold. */
  const credentials = new Map<string, { header: string | undefined; group: Group }>();
  /** Path parameter values that exist in org A, by parameter name; and values of org B's, or of nothing. */
  const known: Record<string, string[]> = {};
  const foreign: Record<string, string[]> = {};
  /** Markers of each org's data: none may appear in an answer to the other org's or no credentials. */
  const markers: Record<'a' | 'b', Set<string>> = { a: new Set(), b: new Set() };
  /** Markers a group's own requests carried (an answer may repeat what the request said); the platform admin's count for all. */
  const disclosed: Record<Group, Set<string>> = { a: new Set(), b: new Set(), anon: new Set(), platform: new Set() };
  const figures = { requests: 0, operations: 0, statuses: new Map<number, number>(), started: 0, ownData: { a: 0, b: 0 }, leakChecked: 0, unanswered: [] as string[] };
  /** What the API logged as unexpected, by request id: the cause of a 5xx, in the failure message. */
  const unexpected = new Map<string, string>();

  before(async () => {
    world = await TestWorld.start({
      tls: true,
      orgs: ['fz-a', 'fz-b'],
      users: {
        aAdmin: { org: 'fz-a', role: 'admin' },
        aOfficer: { org: 'fz-a', role: 'security_officer' },
        aMember: { org: 'fz-a', role: 'member' },
        aVictim: { org: 'fz-a', role: 'member' },
        bAdmin: { org: 'fz-b', role: 'admin' },
        bVictim: { org: 'fz-b', role: 'member' },
      },
      // Generous limits: the fuzzer measures the API, not the limiter (a 429 would be a valid 4xx anyway).
      config: {
        RATE_LIMIT_AUTH_FAILURES_PER_IP: '100000000',
        RATE_LIMIT_AUTH_FAILURES_PER_KEY: '100000000',
        RATE_LIMIT_ASSET_LINKS_PER_IP: '100000000',
        UPLOADS_PER_ORG_CONCURRENT: '100',
        ORG_CONCURRENT_REQUESTS: '64',
        ORG_QUEUED_REQUESTS: '1000',
        PACKAGE_MAX_BYTES: String(PACKAGE_MAX_BYTES),
      },
    });
    agent = new Agent({ keepAlive: true, ca: world.caCert, maxSockets: 4 });
    const logger = world.app.get<Logger>(LOGGER) as unknown as Record<string, unknown>;
    const logError = logger.error as (...args: unknown[]) => unknown;
    logger.error = (fields: { requestId?: string; err?: { name?: string; message?: string } }, ...rest: unknown[]) => {
      if (fields?.requestId) unexpected.set(fields.requestId, `${fields.err?.name}: ${fields.err?.message?.slice(0, 300)}`);
      return logError.call(logger, fields, ...rest);
    };
    a = world.org('fz-a');
    b = world.org('fz-b');
    for (const name of ['aAdmin', 'aOfficer', 'aMember', 'aVictim', 'bAdmin', 'bVictim']) users[name] = world.user(name);

    // Distinctive data in each org: a user (e-mail, display name), a package (name, content).
    const seedOrg = async (org: OrgClient, tag: 'a' | 'b') => {
      const email = `fz-marker-${tag}-4e1c@${tag}-only.example`;
      const displayName = `Quillon Marker ${tag.toUpperCase()} 7d2e`;
      const user = await org.post('users').send({ email, displayName, role: 'member' });
      assert.equal(user.status, 201, user.text);
      const content = `FZ-CONTENT-MARKER-${tag.toUpperCase()}-91b3`;
      const secretPackage = `fz-marker-${tag}-pkg`;
      const uploads = [
        [secretPackage, content],
        [`fz-${tag}-plain`, 'plain words'],
      ];
      for (const [name, body] of uploads) {
        const res = await org.put(`packages/${name}`).set('content-type', 'text/plain').send(body);
        assert.equal(res.status, 201, res.text);
      }
      for (const marker of [email, displayName, content, secretPackage, org.id, org.adminUserId, org.adminKeyId, user.body.user.id]) markers[tag].add(marker);
    };
    await seedOrg(a, 'a');
    await seedOrg(b, 'b');
    for (const [name, user] of Object.entries(users)) {
      markers[name.startsWith('a') ? 'a' : 'b'].add(user.userId).add(user.keyId);
    }

    // Keys that no longer work: one expired (issued to expire in a moment), one revoked.
    const expiring = await a.post(`users/${users.aVictim.userId}/api-keys`).send({ name: 'expiring', expiresAt: new Date(Date.now() + 1500).toISOString() });
    assert.equal(expiring.status, 201, expiring.text);
    const revoked = await a.post(`users/${users.aVictim.userId}/api-keys`).send({ name: 'revoked' });
    assert.equal(revoked.status, 201, revoked.text);
    assert.equal((await a.delete(`api-keys/${revoked.body.apiKey.id}`)).status, 200);
    markers.a.add(expiring.body.apiKey.id).add(revoked.body.apiKey.id);

    // A signed link (anonymous access to A's plain package) and one revoked.
    const link = await a.as(users.aMember).post('packages/fz-a-plain/versions/1/links').send({ ttlSeconds: 3600 });
    assert.equal(link.status, 201, link.text);
    const gone = await a.as(users.aMember).post('packages/fz-a-plain/versions/1/links').send({ ttlSeconds: 3600 });
    assert.equal((await a.post(`asset-links/${gone.body.id}/revoke`)).status, 200);
    const token = (url: string) => url.split('/').pop()!;

    const bearer = (token: string) => `Bearer ${token}`;
    const adminKeyOfA = /^coffer_key\.([^.]+)\.([^.]+)\./.exec(users.aAdmin.token)!;
    credentials.set('none', { header: undefined, group: 'anon' });
    credentials.set('platform admin', { header: bearer(world.adminToken), group: 'platform' });
    credentials.set('A admin', { header: bearer(users.aAdmin.token), group: 'a' });
    credentials.set('A security officer', { header: bearer(users.aOfficer.token), group: 'a' });
    credentials.set('A member', { header: bearer(users.aMember.token), group: 'a' });
    credentials.set('B admin', { header: bearer(users.bAdmin.token), group: 'b' });
    credentials.set('A expired key', { header: bearer(expiring.body.apiKey.secret), group: 'a' });
    credentials.set('A revoked key', { header: bearer(revoked.body.apiKey.secret), group: 'a' });
    // Malformed: wrong scheme, no token, garbage, a real key id with a wrong secret, overlong, a platform token's shape.
    const malformed = [
      'Bearer',
      'Bearer ',
      'Basic dXNlcjpwYXNz',
      `bearer ${users.aAdmin.token}`.replace(/.$/, 'x'),
      `Bearer ${users.aAdmin.token}x`,
      `Bearer coffer_key.${adminKeyOfA[1]}.${adminKeyOfA[2]}.${'A'.repeat(43)}`,
      'Bearer coffer_key....',
      'Bearer coffer_pat.x.y',
      `Bearer ${'a'.repeat(8000)}`,
      'Bearer \t token',
      `Bearer ${world.adminToken.slice(0, -2)}`,
    ];
    malformed.forEach((header, i) => credentials.set(`malformed ${i}`, { header, group: 'anon' }));

    // Path parameters: values that exist in org A (a well-formed request), and others' or none's.
    known.org = [a.slug];
    foreign.org = [b.slug, 'no-such-org', 'FZ-A'];
    known.userId = [users.aVictim.userId, users.aMember.userId, users.aOfficer.userId];
    foreign.userId = [users.bVictim.userId, 'no-such-user', a.adminUserId.toUpperCase()];
    known.keyId = [revoked.body.apiKey.id, expiring.body.apiKey.id, users.aVictim.keyId];
    foreign.keyId = [users.bVictim.keyId, 'no-such-key'];
    known.name = ['fz-a-plain', 'fz-marker-a-pkg', 'fz-new'];
    foreign.name = ['fz-b-plain', 'no-such-package', 'FZ-A-PLAIN'];
    known.version = ['1', '2'];
    foreign.version = ['3', '999'];
    known.linkId = [link.body.id, gone.body.id];
    foreign.linkId = ['no-such-link'];
    known.token = [token(link.body.url), token(gone.body.url)];
    foreign.token = [token(link.body.url).slice(0, -3) + 'AAA', 'not-a-token', token(link.body.url).split('.').slice(0, 2).join('.') + '.'];
    const certificates = await world.api.get('admin/certificates');
    assert.equal(certificates.status, 200, certificates.text);
    known.id = (certificates.body.certificates as Json[]).map((c) => String(c.id));
    foreign.id = ['no-such-id'];

    const res = await world.api.get('openapi.json');
    assert.equal(res.status, 200);
    doc = res.body;
    assert.equal(doc.openapi, '3.1.0');

    // The expiring key must have expired before the run.
    const wait = new Date(expiring.body.apiKey.expiresAt).getTime() + 200 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  });

  after(async () => {
    agent?.destroy();
    await world?.stop();
  });

  /**
   * Sends a request as built; the answer whole. A connection that ends without any answer is
   * sent again once on a connection of its own, and counted and printed: a property fails only
   * on answers, and a second silence fails the run.
   */
  async function send(request: FuzzRequest): Promise<Answer> {
    try {
      return await sendOnce(request, agent);
    } catch (error) {
      figures.unanswered.push(`${request.method} ${request.path.slice(0, 120)}${request.path.length > 120 ? `… (${request.path.length} characters)` : ''} as ${request.who}: ${(error as Error).message}`);
      console.log(`[fuzz] no answer, sent again on a new connection: ${figures.unanswered.at(-1)}`);
      return sendOnce(request, false);
    }
  }

  function sendOnce(request: FuzzRequest, via: Agent | false): Promise<Answer> {
    figures.requests++;
    const { hostname, port } = new URL(world.url);
    const headers: Record<string, string> = { ...request.headers };
    if (request.body && !request.chunked) headers['content-length'] = String(request.body.length);
    if (request.body && request.chunked) headers['transfer-encoding'] = 'chunked';
    return new Promise((resolvePromise, reject) => {
      let answered = false;
      const req = httpsRequest({ host: hostname, port, method: request.method, path: request.path, headers, agent: via, ca: world.caCert }, (res) => {
        answered = true;
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(parts).toString('utf8') }));
        res.on('error', reject);
      });
      req.setTimeout(30_000, () => req.destroy(new Error(`no answer in 30 s to ${request.method} ${request.path.slice(0, 200)}`)));
      req.on('error', (error) => {
        if (!answered) reject(error);
      });
      if (request.body) {
        for (const piece of request.chunked ? pieces(request.body) : [request.body]) req.write(piece);
      }
      req.end();
    });
  }

  /** The properties every answer has. Throws (an AssertionError) when one does not hold. */
  function checkAnswer(request: FuzzRequest, answer: Answer, errorCodes: Set<string>): void {
    const what = `${request.method} ${request.path.slice(0, 300)} as ${request.who} -> ${answer.status} ${answer.text.slice(0, 300)}`;
    let body: any;
    try {
      body = answer.text ? JSON.parse(answer.text) : undefined;
    } catch {
      body = undefined;
    }
    // Never a 5xx, but the two outages that are the operator's to fix.
    if (answer.status >= 500) {
      const cause = unexpected.get(String(answer.headers['x-request-id'])) ?? 'nothing logged';
      assert.ok(answer.status === 503 && ['kms_unavailable', 'database_busy'].includes(body?.error?.code), `a 5xx: ${what} (the API logged: ${cause})`);
    }
    assert.ok(answer.status >= 200 && answer.status < 600 && !(answer.status >= 300 && answer.status < 400), `an unexpected status: ${what}`);
    // HSTS on every answer over TLS.
    assert.match(String(answer.headers['strict-transport-security'] ?? ''), /max-age=\d+/, `no HSTS: ${what}`);
    // Errors in the documented shape.
    if (answer.status >= 400) {
      assert.match(String(answer.headers['content-type'] ?? ''), /^application\/json/, `an error not in JSON: ${what}`);
      assert.ok(body && typeof body === 'object', `an error without a JSON body: ${what}`);
      assert.deepEqual(Object.keys(body), ['error'], `an error body with more than {error}: ${what}`);
      const error = body.error;
      assert.ok(error && typeof error === 'object', `error is not an object: ${what}`);
      for (const key of Object.keys(error)) assert.ok(['code', 'message', 'requestId', 'details'].includes(key), `error.${key}: ${what}`);
      assert.equal(typeof error.code, 'string', `error.code: ${what}`);
      assert.ok(errorCodes.has(error.code), `error.code ${error.code} is not in the document's Error schema: ${what}`);
      assert.equal((ERROR_STATUS as Record<string, number>)[error.code], answer.status, `error.code ${error.code} with status ${answer.status}: ${what}`);
      assert.ok(typeof error.message === 'string' && error.message.length > 0, `error.message: ${what}`);
      assert.match(String(answer.headers['x-request-id'] ?? ''), /^[0-9a-f-]{36}$/, `x-request-id: ${what}`);
      assert.equal(error.requestId, answer.headers['x-request-id'], `error.requestId is not the response's x-request-id: ${what}`);
    }
    // No other org's data, unless the request itself named it.
    const group = credentials.get(request.who)!.group;
    if (group === 'a' || group === 'b') {
      if ([...markers[group]].some((m) => answer.text.includes(m))) figures.ownData[group]++;
    }
    if (group !== 'platform') {
      figures.leakChecked++;
      const others = group === 'a' ? [markers.b] : group === 'b' ? [markers.a] : [markers.a, markers.b];
      const leaked = others.flatMap((set) => [...set]).filter((m) => !disclosed[group].has(m) && !disclosed.platform.has(m) && answer.text.includes(m));
      assert.deepEqual(leaked, [], `another org's data in an answer to ${request.who}: ${what}`);
    }
  }

  /** The markers a request carries (its path, headers, body) join what its group has disclosed. */
  function noteDisclosed(request: FuzzRequest): void {
    const group = credentials.get(request.who)!.group;
    let text = `${request.path} ${Object.values(request.headers).join(' ')} ${request.body?.toString('latin1') ?? ''}`;
    try {
      text += ` ${decodeURIComponent(request.path)}`;
    } catch {
      /* broken percent-encoding: the raw path is enough */
    }
    for (const marker of [...markers.a, ...markers.b]) if (text.includes(marker)) disclosed[group].add(marker);
  }

  /**
   * The requests of one operation. Each dimension (every path parameter, the query, the body, the
   * credentials, extra headers) is well-formed or hostile: a run is wholly well-formed, or has one
   * hostile dimension, or several, so that hostile values also reach the code behind the checks
   * that the others would stop them at.
   */
  function requestsOf(path: string, method: string, operation: Json, values: SchemaValues): fc.Arbitrary<FuzzRequest> {
    const parameters: Json[] = [...(doc.paths[path].parameters ?? []), ...(operation.parameters ?? [])].map((p) => resolve(p, doc));
    const pathParams = parameters.filter((p) => p.in === 'path');
    const queryParams = parameters.filter((p) => p.in === 'query');
    const names = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    const fromSchema = (schema: Json | undefined) => values.value(schema).map((v) => encode(typeof v === 'string' ? v : JSON.stringify(v)));

    const segment = (name: string): Dimension<string> => {
      const schema = pathParams.find((p) => p.name === name)?.schema;
      const mine = known[name]?.length ? fc.constantFrom(...known[name]).map(encode) : undefined;
      const theirs = foreign[name]?.length ? fc.constantFrom(...foreign[name]).map(encode) : undefined;
      return {
        valid: mine ? fc.oneof({ weight: 4, arbitrary: mine }, { weight: 1, arbitrary: fromSchema(schema) }) : fromSchema(schema),
        hostile: theirs ? fc.oneof({ weight: 1, arbitrary: theirs }, { weight: 3, arbitrary: hostileSegment }) : hostileSegment,
      };
    };

    const pair = (name: string, value: string) => `${encode(name)}=${value}`;
    const validQuery = fc
      .tuple(...queryParams.map((p) => (p.required ? fromSchema(p.schema) : sometimes(fromSchema(p.schema), 40))))
      .map((given) => given.flatMap((v, i) => (v === undefined ? [] : [pair(queryParams[i].name, v)])));
    const hostileValue = (schema: Json | undefined) =>
      fc.oneof(
        { weight: 3, arbitrary: hostileString.map((v) => [encode(v)]) },
        { weight: 1, arbitrary: fc.constantFrom(...RAW_SEGMENTS).map((v) => [v]) },
        { weight: 1, arbitrary: wrongValue.map((v) => [encode(JSON.stringify(v) ?? '')]) },
        { weight: 1, arbitrary: fc.array(fromSchema(schema), { minLength: 2, maxLength: 3 }) },
      );
    const query: Dimension<string> = {
      valid: validQuery.map((pairs) => (pairs.length ? `?${pairs.join('&')}` : '')),
      hostile: fc.oneof(
        {
          weight: queryParams.length ? 4 : 0,
          arbitrary: fc
            .tuple(validQuery, fc.nat(), queryParams.length ? fc.oneof(...queryParams.map((p) => hostileValue(p.schema))) : fc.constant(['']))
            .map(([pairs, index, bad]) => {
              const name = queryParams[index % Math.max(1, queryParams.length)]?.name ?? 'x';
              const kept = pairs.filter((p) => !p.startsWith(`${encode(name)}=`));
              return `?${[...kept, ...bad.map((v) => pair(name, v))].join('&')}`;
            }),
        },
        {
          weight: 2,
          arbitrary: fc
            .tuple(validQuery, fc.constantFrom('verbose', 'debug', '__proto__', 'constructor', 'org', 'limit[]', 'a[b]', '', '%00', '%zz'), hostileString.map(encode))
            .map(([pairs, name, value]) => `?${[...pairs, `${name}=${value}`].join('&')}`),
        },
        { weight: 1, arbitrary: fc.constantFrom('?', '?&&', '?=', '?a=1&a', '?%', `?${'q'.repeat(9000)}=1`, '?#frag') },
      ),
    };

    const content = operation.requestBody?.content ?? {};
    const body: Dimension<BodyPart | undefined> = content['application/json']
      ? jsonBodies(values.value(content['application/json'].schema))
      : content['*/*'] || content['application/octet-stream']
        ? uploadBodies
        : strayBodies;

    const headers: Dimension<Record<string, string>> = {
      valid: fc.record({ accept: fc.constantFrom('application/json', 'application/x-ndjson', '*/*') }, { requiredKeys: [] }),
      hostile: fc.record(
        {
          accept: fc.constantFrom('text/html', 'application/x-ndjson, application/json;q=0.5', '', 'garbage', 'application/x-ndjson'.repeat(50)),
          range: fc.constantFrom('bytes=0-3', 'bytes=-1', 'bytes=5-2', 'bytes=0-1,2-3', 'bytes=99999999999999999999999-', 'bytes=', 'items=0-1', 'bytes=0-0', 'bytes=-0'),
          'if-range': fc.constantFrom('"x"', 'W/"x"', 'Wed, 21 Oct 2015 07:28:00 GMT'),
          'x-forwarded-for': fc.constantFrom('10.0.0.1', '1.2.3.4, 5.6.7.8', 'garbage'),
          'x-request-id': fc.constantFrom('client-chosen', 'a'.repeat(200)),
          'x-http-method-override': fc.constantFrom('DELETE', 'PUT'),
          expect: fc.constantFrom('100-continue'),
        },
        { requiredKeys: [] },
      ),
    };

    const who: Dimension<string> = {
      valid: fc.oneof(
        { weight: 5, arbitrary: fc.constant('A admin') },
        { weight: 2, arbitrary: fc.constant('A member') },
        { weight: 1, arbitrary: fc.constant('A security officer') },
        { weight: 2, arbitrary: fc.constant('platform admin') },
      ),
      hostile: fc.oneof(
        { weight: 2, arbitrary: fc.constant('B admin') },
        { weight: 1, arbitrary: fc.constant('none') },
        { weight: 1, arbitrary: fc.constantFrom('A expired key', 'A revoked key') },
        { weight: 2, arbitrary: fc.constantFrom(...[...credentials.keys()].filter((k) => k.startsWith('malformed'))) },
      ),
    };

    // Which dimensions are hostile: none, one, or each with even odds.
    const count = names.length + 4;
    const hostileSet = fc.oneof(
      { weight: 3, arbitrary: fc.constant<number[]>([]) },
      { weight: 5, arbitrary: fc.nat({ max: count - 1 }).map((i) => [i]) },
      { weight: 2, arbitrary: fc.array(fc.boolean(), { minLength: count, maxLength: count }).map((bits) => bits.flatMap((bit, i) => (bit ? [i] : []))) },
    );
    const both = <T,>(d: Dimension<T>) => fc.tuple(d.valid, d.hostile);
    return fc
      .record({
        hostile: hostileSet,
        segments: fc.tuple(...names.map((name) => both(segment(name)))),
        query: both(query),
        body: both(body),
        headers: both(headers),
        who: both(who),
      })
      .map((r) => {
        const pick = <T,>(index: number, [good, bad]: [T, T]) => (r.hostile.includes(index) ? bad : good);
        let concrete = path;
        names.forEach((name, i) => (concrete = concrete.replace(`{${name}}`, pick(i, r.segments[i]))));
        const q = pick(names.length, r.query);
        const bodyPart = pick(names.length + 1, r.body);
        const headerSet: Record<string, string> = { ...pick(names.length + 2, r.headers) };
        const credential = pick(names.length + 3, r.who);
        const authorization = credentials.get(credential)!.header;
        if (authorization !== undefined) headerSet.authorization = authorization;
        if (bodyPart?.type !== undefined) headerSet['content-type'] = bodyPart.type;
        if (bodyPart?.encoding !== undefined) headerSet['content-encoding'] = bodyPart.encoding;
        return {
          operation: `${method.toUpperCase()} ${path}`,
          method: method.toUpperCase(),
          path: concrete + q,
          who: credential,
          headers: headerSet,
          body: bodyPart?.text,
          chunked: bodyPart?.chunked,
        };
      });
  }

  test('the checks catch what they are for: a 5xx, no HSTS, an error out of shape, another org\'s data', () => {
    const codes = new Set<string>(doc.components.schemas.Error.properties.error.properties.code.enum);
    const request: FuzzRequest = { operation: 'GET /x', method: 'GET', path: '/x', who: 'A admin', headers: {} };
    const id = '6f1f6b8e-8d2b-4a8e-9a51-8f0c1d2e3f40';
    const good = { 'strict-transport-security': 'max-age=31536000', 'x-request-id': id, 'content-type': 'application/json; charset=utf-8' };
    const error = (code: string, extra: Json = {}) => JSON.stringify({ error: { code, message: 'm', requestId: id, ...extra } });
    checkAnswer(request, { status: 404, headers: good, text: error('route_not_found') }, codes);
    checkAnswer(request, { status: 503, headers: good, text: error('kms_unavailable') }, codes);
    checkAnswer(request, { status: 200, headers: good, text: JSON.stringify({ mine: [...markers.a] }) }, codes);
    const fails = (status: number, headers: Json, text: string, who = 'A admin') => assert.throws(() => checkAnswer({ ...request, who }, { status, headers, text }, codes));
    fails(500, good, error('internal_error'));
    fails(503, good, error('service_unavailable'));
    fails(404, { ...good, 'strict-transport-security': undefined }, error('route_not_found'));
    fails(404, good, JSON.stringify({ message: 'Not Found', statusCode: 404 }));
    fails(404, good, error('not_a_code'));
    fails(400, good, error('route_not_found'));
    fails(404, good, error('route_not_found', { requestId: 'another' }));
    fails(404, good, error('route_not_found', { stack: 'at x' }));
    fails(200, good, JSON.stringify({ users: [[...markers.b][0]] }));
    fails(200, good, JSON.stringify({ users: [[...markers.a][0]] }), 'B admin');
    fails(200, good, JSON.stringify({ users: [[...markers.a][0]] }), 'none');
  });

  test('every operation, fuzzed: no 5xx, errors in their shape with HSTS, no other org\'s data', async () => {
    const errorCodes = new Set<string>(doc.components.schemas.Error.properties.error.properties.code.enum);
    const operations = Object.entries<Json>(doc.paths).flatMap(([path, item]) => METHODS.filter((m) => item[m]).map((method) => ({ path, method, operation: item[method] as Json })));
    // Deletions last: the other operations find the packages, users and keys they name.
    const selected = operations
      .filter(({ path, method }) => !ONLY || `${method.toUpperCase()} ${path}`.includes(ONLY))
      .sort((x, y) => Number(x.method === 'delete') - Number(y.method === 'delete'));
    assert.ok(selected.length > 0, `no operation matches FUZZ_OP=${ONLY}`);
    figures.operations = selected.length;
    figures.started = Date.now();
    console.log(
      `[fuzz] seed ${SEED} (FUZZ_SEED to change it), ${RUNS_PER_OPERATION} runs on each of ${selected.length} operations (of ${operations.length} in the document): ` +
        `about ${RUNS_PER_OPERATION * selected.length} requests; reproduce with FUZZ_SEED=${SEED} npm test -- fuzz`,
    );

    const failures: string[] = [];
    const values = new SchemaValues(doc, SEED);
    for (const { path, method, operation } of selected) {
      const name = `${method.toUpperCase()} ${path}`;
      // The operation's own seed, from the run's and its name: FUZZ_OP replays the same requests.
      const seed = createHash('sha256').update(`${SEED} ${name}`).digest().readInt32BE(0);
      const byStatus = new Map<number, number>();
      const property = fc.asyncProperty(requestsOf(path, method, operation, values), async (request) => {
        noteDisclosed(request);
        const answer = await send(request);
        figures.statuses.set(answer.status, (figures.statuses.get(answer.status) ?? 0) + 1);
        byStatus.set(answer.status, (byStatus.get(answer.status) ?? 0) + 1);
        checkAnswer(request, answer, errorCodes);
      });
      const details = await fc.check(property, { seed, numRuns: RUNS_PER_OPERATION, interruptAfterTimeLimit: OPERATION_TIME_LIMIT_MS, markInterruptAsFailure: false });
      console.log(`[fuzz] ${name}: ${histogram(byStatus)}`);
      if (details.interrupted && !details.failed) console.log(`[fuzz] ${name}: time limit reached after ${details.numRuns} runs`);
      if (details.failed) {
        const message = failureReport(details);
        failures.push(`${name} (operation seed ${seed}; run FUZZ_SEED=${SEED} FUZZ_OP='${name}' to replay the operation): ${message.slice(0, 4000)}`);
        console.log(`[fuzz] FAILED ${name}:\n${message.slice(0, 4000)}`);
      }
    }
    const seconds = ((Date.now() - figures.started) / 1000).toFixed(1);
    console.log(`[fuzz] ${figures.requests} requests on ${figures.operations} operations in ${seconds} s, seed ${SEED}; statuses ${histogram(figures.statuses)}; ${failures.length} operations failed`);
    if (figures.unanswered.length) console.log(`[fuzz] ${figures.unanswered.length} requests got no answer on their first connection and one on a new one:\n${figures.unanswered.join('\n')}`);
    console.log(`[fuzz] ${figures.leakChecked} answers checked for other orgs' data; ${figures.ownData.a} answers to A and ${figures.ownData.b} to B held their own org's markers`);
    // The leak check sees markers where they may be: else it would pass for want of looking.
    assert.ok(figures.ownData.a > 0, "no answer to org A's credentials showed A's own data");
    assert.deepEqual(failures, [], `fuzz failures (seed ${SEED}):\n${failures.join('\n\n')}`);
  });

  test('afterwards nothing is half-written: no org left provisioning, every chain verifies, every version downloads, no open upload, no object without its row', async () => {
    // Orgs: none left provisioning (a creation still waiting for the provisioner gets its time).
    let organizations: Json[] = [];
    for (const deadline = Date.now() + 60_000; ; ) {
      const res = await world.api.get('organizations');
      assert.equal(res.status, 200, res.text);
      organizations = res.body.organizations;
      if (!organizations.some((o) => o.status !== 'active') || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.deepEqual(organizations.filter((o) => o.status !== 'active').map((o) => `${o.slug}: ${o.status}`), [], 'orgs left provisioning');

    // Every chain verifies: the control plane's and A's and B's through the API, every org's in the service too.
    const verified = await world.api.get('admin/audit-logs/verify');
    assert.deepEqual([verified.status, verified.body.valid], [200, true], `control chain: ${verified.text}`);
    for (const org of [a, b]) {
      const res = await org.get('audit-logs/verify');
      assert.deepEqual([res.status, res.body.valid], [200, true], `${org.slug} chain: ${res.text}`);
    }
    const audit = world.app.get(AuditService);
    const registered = await world.app.get(OrgRegistry).list();
    for (const org of registered) {
      const result = await audit.verify(audit.chain(org));
      assert.equal(result.valid, true, `${org.slug} chain: ${JSON.stringify(result)}`);
    }

    // A's and B's packages: every one listed has versions, every version downloads whole.
    for (const org of [a, b]) {
      const list = await org.get('packages');
      assert.equal(list.status, 200, list.text);
      for (const listed of list.body.packages as Json[]) {
        assert.ok(listed.versions > 0 && listed.latestVersion !== null, `${org.slug}: package ${listed.name} without versions is visible`);
        const described = await org.get(`packages/${encodeURIComponent(listed.name)}`);
        assert.equal(described.status, 200, described.text);
        assert.ok(described.body.versions.length > 0, `${org.slug}: ${listed.name} has no versions`);
        for (const version of described.body.versions as Json[]) {
          const content = await org.get(`packages/${encodeURIComponent(listed.name)}/versions/${version.version}/content`).buffer(true).parse((res, done) => {
            const parts: Buffer[] = [];
            res.on('data', (d: Buffer) => parts.push(d));
            res.on('end', () => done(null, Buffer.concat(parts)));
          });
          assert.equal(content.status, 200, `${org.slug}: ${listed.name} v${version.version} does not download`);
          const bytes = content.body as Buffer;
          assert.equal(bytes.length, version.size, `${org.slug}: ${listed.name} v${version.version} size`);
          assert.equal(createHash('sha256').update(bytes).digest('hex'), version.sha256, `${org.slug}: ${listed.name} v${version.version} digest`);
        }
      }
      // Users and keys agree: every user readable, every key someone's.
      const listedUsers = await org.get('users');
      assert.equal(listedUsers.status, 200, listedUsers.text);
      const ids = new Set((listedUsers.body.users as Json[]).map((u) => u.id));
      for (const id of ids) assert.equal((await org.get(`users/${encodeURIComponent(id)}`)).status, 200, `${org.slug}: user ${id}`);
      const keys = await org.get('api-keys');
      assert.equal(keys.status, 200, keys.text);
      for (const key of keys.body.apiKeys as Json[]) assert.ok(ids.has(key.userId), `${org.slug}: key ${key.id} of no listed user`);
    }

    // In every org's database: no upload left open, no committed version of a deleted package,
    // no package without versions visible, no key of a missing user; in storage, no object
    // without its version row.
    for (const org of registered) {
      const db = await connectToOrgAsOwner(world.env, org.id);
      try {
        const open = await db.query(`SELECT id FROM package_versions WHERE state = 'uploading'`);
        assert.deepEqual(open.rows, [], `${org.slug}: uploads left open`);
        const stray = await db.query(
          `SELECT v.id FROM package_versions v LEFT JOIN packages p ON p.id = v.package_id
            WHERE v.state = 'committed' AND (p.id IS NULL OR p.deleted_at IS NOT NULL)`,
        );
        assert.deepEqual(stray.rows, [], `${org.slug}: committed versions of no live package`);
        const empty = await db.query(
          `SELECT p.name FROM packages p WHERE p.deleted_at IS NULL
              AND NOT EXISTS (SELECT 1 FROM package_versions v WHERE v.package_id = p.id AND v.state = 'committed')`,
        );
        // A package whose versions were all deleted keeps its row (its numbering goes on), unseen.
        const client = org.id === a.id ? a : org.id === b.id ? b : undefined;
        for (const { name } of client ? empty.rows : []) {
          const seen = await client!.get(`packages/${encodeURIComponent(name)}`);
          assert.equal(seen.status, 404, `${org.slug}: package ${name} without versions is visible: ${seen.text}`);
        }
        const keys = await db.query(`SELECT k.id FROM api_keys k LEFT JOIN users u ON u.id = k.user_id WHERE u.id IS NULL`);
        assert.deepEqual(keys.rows, [], `${org.slug}: keys of no user`);
        const rows = new Set((await db.query('SELECT id FROM package_versions')).rows.map((r: Json) => r.id));
        const dir = join(world.config.STORAGE_DIR, 'orgs', org.id, 'packages');
        const objects = existsSync(dir) ? readdirSync(dir) : [];
        assert.deepEqual(objects.filter((id) => !rows.has(id)), [], `${org.slug}: stored objects without a version row`);
      } finally {
        await db.end();
      }
    }
    console.log(`[fuzz] afterwards: ${registered.length} orgs (${registered.length - 2} created by the fuzzer), every chain valid, nothing half-written`);
  });
});
