import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import type { INestApplicationContext } from '@nestjs/common';
import { CORE_SCHEMA, load } from 'js-yaml';
import { migrateInstallation } from '../../apps/cli/src/migrate';
import { createWorker } from '../../apps/worker/src/bootstrap';
import { freePort, REPO_ROOT, startApiProcess, stopProcess } from '../support/api-process';
import { createTestEnv, TestEnv } from '../support/test-env';

const RULES_PATH = join(REPO_ROOT, 'deploy/prometheus/coffer-rules.yml');
const DASHBOARD_PATH = join(REPO_ROOT, 'deploy/grafana/coffer-dashboard.json');

/** PromQL's functions and aggregations (Prometheus 2.x/3.x): what may stand before `(`. */
const FUNCTIONS = new Set(
  (
    'abs absent absent_over_time avg avg_over_time bottomk ceil changes clamp clamp_max clamp_min count count_over_time ' +
    'count_values day_of_month day_of_week day_of_year days_in_month delta deriv exp floor group histogram_quantile ' +
    'holt_winters hour idelta increase irate label_join label_replace last_over_time ln log10 log2 max max_over_time min ' +
    'min_over_time minute month predict_linear present_over_time quantile quantile_over_time rate resets round scalar sgn ' +
    'sort sort_desc sqrt stddev stddev_over_time stdvar stdvar_over_time sum sum_over_time time timestamp topk vector year'
  ).split(' '),
);
const KEYWORDS = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset']);

/**
 * The metric names a PromQL expression reads. Quoted strings, label matchers, range selectors
 * and grouping label lists are dropped first; what remains that is not a function, a keyword or
 * a number is a metric name. Throws on an unknown function or unbalanced brackets.
 */
function metricNames(expr: string): string[] {
  let rest = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/'(?:[^'\\]|\\.)*'/g, "''");
  for (const [open, close] of ['()', '{}', '[]']) {
    assert.equal(rest.split(open).length, rest.split(close).length, `balanced ${open}${close} in ${expr}`);
  }
  rest = rest
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    // Grouping and matching modifiers with their label lists: `sum by (le) (...)` reads as `sum (...)`.
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names: string[] = [];
  for (const match of rest.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const word = match[0];
    if (KEYWORDS.has(word)) continue;
    if (rest.slice(match.index! + word.length).trimStart().startsWith('(')) {
      assert.ok(FUNCTIONS.has(word), `${word}() is a PromQL function (in ${expr})`);
      continue;
    }
    names.push(word);
  }
  return names;
}

/** The series names of the families a /metrics text declares (`# TYPE`), with a histogram's and summary's own series. */
function exportedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
    if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(name + suffix);
  }
  return names;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'node_modules' ? [] : sourceFiles(path);
    return path.endsWith('.ts') && !path.endsWith('.spec.ts') ? [path] : [];
  });
}

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: { refId: string; expr: string; datasource?: { uid: string } }[];
}

describe('Prometheus rules (deploy/prometheus) and Grafana dashboard (deploy/grafana) against the metrics Coffer exports', () => {
  let env: TestEnv;
  let api: ChildProcess | undefined;
  let worker: INestApplicationContext | undefined;
  let exported = new Set<string>();
  let families = new Set<string>();
  const byProcess = { api: new Set<string>(), worker: new Set<string>() };
  let workerPort = 0;
  const rules = (load(readFileSync(RULES_PATH, 'utf8'), { schema: CORE_SCHEMA }) as { groups: { name: string; rules: Rule[] }[] }).groups;
  const allRules = rules.flatMap((g) => g.rules);
  const dashboard = JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as {
    uid: string;
    title: string;
    panels: Panel[];
    templating: { list: { name: string; type: string; query: string }[] };
  };
  const panels = dashboard.panels.filter((p) => p.type !== 'row');

  before(async () => {
    const metricsPort = await freePort();
    env = await createTestEnv({ METRICS_PORT: String(metricsPort) });
    await migrateInstallation(env.config);
    api = (await startApiProcess(env.config)).child;
    // The worker's own listener (job metrics, WORKER_METRICS_PORT): a running Coffer is both.
    workerPort = await freePort();
    worker = await createWorker({ ...env.config, WORKER_METRICS_PORT: workerPort }, 10_000);
    const texts = {
      api: await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(),
      worker: await (await fetch(`http://127.0.0.1:${workerPort}/metrics`)).text(),
    };
    for (const [name, text] of Object.entries(texts) as ['api' | 'worker', string][]) {
      exported = new Set([...exported, ...exportedNames(text)]);
      byProcess[name] = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
      families = new Set([...families, ...byProcess[name]]);
    }
    const health = await fetch(`http://127.0.0.1:${workerPort}/health`);
    assert.deepEqual([health.status, await health.json()], [200, { status: 'ok', checks: { postgres: 'ok', redis: 'ok' } }]);
  });
  after(async () => {
    await worker?.close();
    await stopProcess(api);
    await env?.destroy();
  });

  test("the worker's compose healthcheck (`coffer healthcheck worker`) probes its /health on WORKER_METRICS_PORT", async () => {
    const healthcheck = async (port: number) => {
      const child = spawn('sh', [join(REPO_ROOT, 'deploy/docker/coffer'), 'healthcheck', 'worker'], {
        env: { PATH: process.env.PATH!, COFFER_APP_DIR: REPO_ROOT, WORKER_METRICS_PORT: String(port) },
      });
      return new Promise<number | null>((resolve) => child.on('close', resolve));
    };
    assert.equal(await healthcheck(workerPort), 0);
    assert.equal(await healthcheck(await freePort()), 1, 'nothing listening: unhealthy');
  });

  test('the worker exports its job metrics and none of the per-org or KMS gauges the API exports (no double alerts)', () => {
    assert.ok(byProcess.worker.has('coffer_job_duration_seconds'));
    assert.ok(!byProcess.api.has('coffer_job_duration_seconds'), 'the API runs no job');
    for (const name of ['coffer_kms_up', 'coffer_pending_writes', 'coffer_org_key_age_seconds', 'coffer_http_request_duration_seconds']) {
      assert.ok(byProcess.api.has(name) && !byProcess.worker.has(name), name);
    }
  });

  test("a running API's and worker's /metrics declare every metric the source defines, and nothing else of Coffer's own", () => {
    const declared = new Set<string>();
    for (const file of sourceFiles(join(REPO_ROOT, 'libs'))) {
      // `name: 'coffer_…'` (prom-client) or a helper called with the name first (`perOrg('coffer_…', …)`);
      // not a default value (`.default('coffer_org_')`, a database prefix).
      const text = readFileSync(file, 'utf8');
      for (const [, name] of text.matchAll(/(?:\bname:\s*|\b(?!default\()\w+\()'(coffer_[a-z0-9_]*[a-z0-9])'/g)) declared.add(name);
    }
    assert.ok(declared.size >= 10, [...declared].join(' '));
    for (const name of declared) assert.ok(families.has(name), `${name} is exported`);
    // Besides those: prom-client's default process and Node.js metrics, under the same prefix.
    const own = [...families].filter((n) => !/^coffer_(process|nodejs)_/.test(n));
    assert.deepEqual(own.sort(), [...declared].sort());
  });

  test('the metric-name reader finds names and refuses what is not PromQL', () => {
    assert.deepEqual(
      metricNames('sum by (job, le) (rate(a_total{status=~"5..", x="y z"}[5m])) / on (job) group_left(le) b > 2 and c unless absent(d)'),
      ['a_total', 'b', 'c', 'd'],
    );
    assert.deepEqual(metricNames('(a > 1) and on (job) (b > 0)'), ['a', 'b']);
    assert.throws(() => metricNames('rat(x[5m])'), /rat\(\) is a PromQL function/);
    assert.throws(() => metricNames('sum(rate(x[5m])'), /balanced/);
  });

  test('the rules file is Prometheus rule groups: unique names, alerts with an expression, a duration, a severity and a summary', () => {
    assert.ok(rules.length >= 2);
    assert.equal(new Set(rules.map((g) => g.name)).size, rules.length, 'group names are unique');
    const alerts = allRules.map((r) => r.alert);
    assert.equal(new Set(alerts).size, alerts.length, 'alert names are unique');
    for (const rule of allRules) {
      assert.match(rule.alert ?? '', /^Coffer[A-Z][A-Za-z0-9]+$/, JSON.stringify(rule));
      assert.equal(rule.record, undefined);
      assert.equal(typeof rule.expr, 'string');
      assert.match(rule.for ?? '', /^\d+[smhd]$/, `${rule.alert}: for`);
      assert.ok(['critical', 'warning'].includes(rule.labels?.severity ?? ''), `${rule.alert}: severity`);
      assert.ok(rule.annotations?.summary, `${rule.alert}: summary`);
      assert.deepEqual(Object.keys(rule).filter((k) => !['alert', 'expr', 'for', 'labels', 'annotations'].includes(k)), [], rule.alert);
    }
  });

  test('every metric a rule reads is one a running Coffer exports; a rule on a made-up metric would be caught', () => {
    for (const rule of allRules) {
      const names = metricNames(rule.expr);
      assert.ok(names.length > 0, `${rule.alert} reads a metric`);
      for (const name of names) assert.ok(exported.has(name), `${rule.alert}: ${name} is exported`);
    }
    assert.ok(!metricNames('coffer_kms_available == 0').every((n) => exported.has(n)), 'an unknown name is not accepted');
  });

  test('the rules cover KMS down, audit delivery lag, certificates expiring and failing to renew, the spool, the rewrap backlog, 5xx rate and p99 latency', () => {
    const reading = (pattern: RegExp) => allRules.filter((r) => pattern.test(r.expr)).map((r) => r.alert);
    const required: [string, RegExp][] = [
      ['KMS down', /coffer_kms_up == 0/],
      ['audit delivery lagging', /time\(\) - coffer_audit_delivery_last_success_timestamp_seconds/],
      ['served certificate expiring', /coffer_tls_certificate_expiry_seconds </],
      ['ACME certificate expiring', /coffer_certificate_expiry_seconds </],
      ['certificate renewal failing', /coffer_certificate_renewal_failures > 0/],
      ['spool growing', /coffer_pending_writes > \d+/],
      ['rewrap backlog', /coffer_org_key_rewrap_remaining > 0/],
      ['HTTP 5xx rate', /coffer_http_request_duration_seconds_count\{status=~"5\.\."\}/],
      ['latency p99', /histogram_quantile\(0\.99,[^]*coffer_http_request_duration_seconds_bucket/],
    ];
    for (const [condition, pattern] of required) assert.ok(reading(pattern).length > 0, condition);
  });

  test('the dashboard: a Prometheus data-source variable used by every query, unique panel ids within a 24-column grid, only exported metrics', () => {
    assert.equal(dashboard.uid, 'coffer-overview');
    const variable = dashboard.templating.list.find((v) => v.type === 'datasource');
    assert.deepEqual([variable?.name, variable?.query], ['datasource', 'prometheus']);
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    assert.ok(panels.length >= 10);
    for (const panel of panels) {
      const { x, w, h } = panel.gridPos;
      assert.ok(x >= 0 && w > 0 && h > 0 && x + w <= 24, `${panel.title}: gridPos`);
      assert.deepEqual(panel.datasource, { type: 'prometheus', uid: '${datasource}' }, panel.title);
      assert.ok(panel.targets?.length, `${panel.title} has queries`);
      assert.equal(new Set(panel.targets!.map((t) => t.refId)).size, panel.targets!.length, `${panel.title}: refIds`);
      for (const target of panel.targets!) {
        assert.equal(target.datasource?.uid, '${datasource}', panel.title);
        const names = metricNames(target.expr);
        assert.ok(names.length > 0, `${panel.title} reads a metric`);
        for (const name of names) assert.ok(exported.has(name), `${panel.title}: ${name} is exported`);
      }
    }
  });

  test('the dashboard shows what the rules alert on', () => {
    const exprs = panels.flatMap((p) => p.targets!.map((t) => t.expr)).join('\n');
    for (const metric of [
      'coffer_kms_up',
      'coffer_audit_delivery_last_success_timestamp_seconds',
      'coffer_audit_delivery_pending_entries',
      'coffer_tls_certificate_expiry_seconds',
      'coffer_certificate_expiry_seconds',
      'coffer_certificate_renewal_failures',
      'coffer_pending_writes',
      'coffer_org_key_rewrap_remaining',
      'coffer_http_request_duration_seconds_bucket',
      'coffer_http_request_duration_seconds_count',
    ]) {
      assert.ok(new RegExp(`\\b${metric}\\b`).test(exprs), metric);
    }
  });
});
