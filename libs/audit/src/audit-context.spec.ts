import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Actor, RequestSource } from '@coffer/tenancy';
import { AuditScope, auditVars } from './audit-context';

const actor: Actor = { kind: 'anonymous', id: 'anonymous' };
const source: RequestSource = { requestId: 'req-1', clientIp: '203.0.113.9', userAgent: 'ua/1' };

/** Strings a request could carry, shaped like every marker format the audit context has used or could plausibly use. */
const FORGERIES = ['ip', 'userAgent', 'requestId', 'now'].flatMap((name) => [
  `\u0000coffer-audit-var:${name}`,
  `\u0000coffer-audit-var:00000000-0000-0000-0000-000000000000:${name}`,
  `coffer-audit-var:${name}`,
  `\u0000coffer-audit-var:`,
]);

test('audit variables resolve where a symbol was put, and only there', () => {
  const scope = new AuditScope(actor, source);
  const before = Date.now();
  scope.add({ action: 'x.done', target: { id: 't' }, from: auditVars.ip, agent: auditVars.userAgent, request: auditVars.requestId, at: auditVars.now, list: [auditVars.ip] });
  const [entry] = scope.entries();
  assert.equal(entry.body.from, '203.0.113.9');
  assert.equal(entry.body.agent, 'ua/1');
  assert.equal(entry.body.request, 'req-1');
  assert.ok((entry.body.at as number) >= before && (entry.body.at as number) <= Date.now());
  assert.deepEqual(entry.body.list, ['203.0.113.9']);
});

test('no string from a request is taken for an audit variable, wherever it is (target, body, keys, arrays)', () => {
  const scope = new AuditScope(actor, source);
  for (const forged of FORGERIES) {
    scope.add({ action: 'x.forged', target: { id: forged, [forged]: forged }, param: forged, nested: { deep: [forged, { v: forged }] } });
  }
  const entries = scope.entries();
  FORGERIES.forEach((forged, i) => {
    const { target, body } = entries[i];
    assert.deepEqual(target, { id: forged, [forged]: forged }, JSON.stringify(forged));
    assert.deepEqual(body, { param: forged, nested: { deep: [forged, { v: forged }] } }, JSON.stringify(forged));
  });
  // The entry's own source fields name the client; its target and body never asked for it.
  assert.ok(!JSON.stringify(entries.map((e) => [e.target, e.body])).includes('203.0.113.9'));
});

test("one scope's markers mean nothing in another scope", () => {
  // A marker could only be learnt from a scope's own pending JSON; even then it is another scope's.
  const first = new AuditScope(actor, source);
  first.add({ action: 'x.first', at: auditVars.ip });
  const pending = (first as unknown as { pending: { json: string }[] }).pending[0].json;
  const marker = (JSON.parse(pending) as { at: string }).at;
  assert.match(marker, /^\u0000coffer-audit-var:[0-9a-f-]{36}:ip$/);

  const second = new AuditScope(actor, { ...source, clientIp: '198.51.100.7' });
  second.add({ action: 'x.second', target: { id: marker } });
  assert.equal(second.entries()[0].target?.id, marker);
});

test('a symbol that is not one of auditVars is refused', () => {
  const scope = new AuditScope(actor, source);
  assert.throws(() => scope.add({ action: 'x', v: Symbol('audit.ip') }), /is not one of auditVars/);
});
