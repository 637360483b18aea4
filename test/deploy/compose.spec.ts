import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv from 'ajv';
import { CONFIG_KEYS } from '@coffer/config';
import { COMPOSE_DIR, COMPOSE_PATH, composeVariables, parseCompose } from './compose-file';
import { REPO_ROOT } from '../support/api-process';

const ONE_SHOTS = ['init', 'minio-init'];

/**
 * The Compose specification's JSON schema, vendored (deploy/compose/compose-spec.schema.json, see
 * the README there). It is written for draft-04-style `id`s, which Ajv 8 refuses: they name
 * nothing that is referenced, so they are dropped along with `$schema`.
 */
function composeValidator() {
  const schema = JSON.parse(readFileSync(join(COMPOSE_DIR, 'compose-spec.schema.json'), 'utf8'), (key, value) =>
    (key === 'id' && typeof value === 'string') || key === '$schema' ? undefined : value,
  );
  return new Ajv({ strict: false, allErrors: true, validateFormats: false }).compile(schema);
}

describe('deploy/compose/compose.yaml', () => {
  const text = readFileSync(COMPOSE_PATH, 'utf8');
  const compose = parseCompose(text);
  const services = Object.entries(compose.services);

  test('validates against the Compose specification schema, which rejects a broken copy', () => {
    const validate = composeValidator();
    assert.equal(validate(compose), true, JSON.stringify(validate.errors, null, 2));
    const broken = parseCompose(text.replace('restart: unless-stopped', 'restart: 5').replace('interval: 5s', 'intervl: 5s'));
    assert.equal(validate(broken), false);
    assert.deepEqual(new Set(validate.errors!.map((e) => e.instancePath.split('/')[3])), new Set(['restart', 'healthcheck']));
  });

  test('publishes only 443 and 80, both by the api', () => {
    const published = services.flatMap(([name, s]) => (s.ports ?? []).map((p) => `${name} ${p}`));
    assert.deepEqual(published.sort(), ['api 443:8443', 'api 80:8080']);
    const env = compose['x-coffer-env'];
    assert.equal(env.HTTPS_PORT, '8443');
    assert.equal(env.HTTP_PORT, '8080');
    assert.equal(env.HTTPS_PUBLIC_PORT, '443', 'redirects name the published port');
  });

  test('only api and worker reach outside (worker: outbound only); every other service sits only on the internal network', () => {
    assert.deepEqual(compose.networks.internal, { internal: true });
    assert.notEqual(compose.networks.edge?.internal, true);
    for (const [name, service] of services) {
      assert.deepEqual(service.networks, ['api', 'worker'].includes(name) ? ['internal', 'edge'] : ['internal'], name);
    }
    assert.equal(services.find(([name]) => name === 'worker')![1].ports, undefined, 'the worker publishes nothing');
  });

  test('api, worker and init get every variable of the config schema, and only those', () => {
    const schemaKeys = [...CONFIG_KEYS].sort();
    assert.deepEqual(Object.keys(compose['x-coffer-env']).sort(), schemaKeys, 'x-coffer-env');
    for (const name of ['api', 'worker']) assert.deepEqual(Object.keys(compose.services[name].environment!).sort(), schemaKeys, name);
    const init = Object.keys(compose.services.init.environment!);
    assert.deepEqual(init.filter((k) => !k.startsWith('COFFER_INIT_')).sort(), schemaKeys, 'init');
    const example = readFileSync(join(REPO_ROOT, '.env.example'), 'utf8');
    assert.deepEqual([...example.matchAll(/^([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]).sort(), schemaKeys, '.env.example');
  });

  test('long-running services restart and have healthchecks; one-shots run once; dependencies wait for health or completion', () => {
    for (const [name, service] of services) {
      if (ONE_SHOTS.includes(name)) {
        assert.equal(service.restart, 'no', name);
        continue;
      }
      assert.equal(service.restart, 'unless-stopped', name);
      // The worker serves nothing to probe; it exits on a fatal error and is restarted.
      if (name !== 'worker') assert.ok(service.healthcheck?.test.length, `${name} has a healthcheck`);
    }
    for (const [name, service] of services) {
      for (const [target, { condition }] of Object.entries(service.depends_on ?? {})) {
        assert.ok(compose.services[target], `${name} depends on unknown ${target}`);
        if (ONE_SHOTS.includes(target)) assert.equal(condition, 'service_completed_successfully', `${name} -> ${target}`);
        else {
          assert.equal(condition, 'service_healthy', `${name} -> ${target}`);
          assert.ok(compose.services[target].healthcheck, `${target} has the healthcheck ${name} waits for`);
        }
      }
    }
    for (const name of ['api', 'worker']) {
      assert.deepEqual(Object.keys(compose.services[name].depends_on!).sort(), ['init', 'minio-init', 'openbao', 'postgres', 'redis'], name);
    }
  });

  test('state lives in declared named volumes; mounted files exist', () => {
    for (const [name, service] of services) {
      for (const volume of service.volumes ?? []) {
        const [source] = volume.split(':');
        if (source.startsWith('./')) assert.ok(existsSync(join(COMPOSE_DIR, source)), `${name}: ${source}`);
        else assert.ok(source in compose.volumes, `${name}: volume ${source} is declared`);
      }
    }
    const dataOf = (name: string) => (compose.services[name].volumes ?? []).map((v) => v.split(':')[1]);
    assert.ok(dataOf('postgres').includes('/var/lib/postgresql/data'));
    assert.ok(dataOf('redis').includes('/data'));
    assert.ok(dataOf('minio').includes('/data'));
    assert.ok(dataOf('api').includes('/var/lib/coffer'), 'TLS_DIR and the bootstrap token survive a restart');
    assert.ok(dataOf('init').includes('/var/lib/coffer-init'), 'the OpenBao keys survive a restart');
  });

  test('MinIO encrypts server-side, and OpenBao runs as Vault by changing the image alone', () => {
    const minio = compose.services.minio.environment!;
    assert.match(String(minio.MINIO_KMS_SECRET_KEY), /^coffer-minio:\$\{MINIO_KMS_SECRET_KEY:\?/);
    assert.match(readFileSync(join(COMPOSE_DIR, 'minio/minio-init.sh'), 'utf8'), /mc encrypt set sse-s3 /);
    const openbao = compose.services.openbao;
    const config = (v: unknown) => JSON.parse(String(v)).storage.file.path;
    assert.equal(config(openbao.environment!.BAO_LOCAL_CONFIG), '/openbao/file');
    assert.equal(config(openbao.environment!.VAULT_LOCAL_CONFIG), '/vault/file');
    assert.deepEqual(openbao.volumes!.map((v) => v.split(':')[1]).sort(), ['/openbao/file', '/vault/file']);
    assert.match(openbao.healthcheck!.test.join(' '), /command -v bao \|\| command -v vault/);
  });

  test('its secrets are required from .env, never written into the file', () => {
    const variables = composeVariables(text);
    for (const name of ['POSTGRES_PASSWORD', 'COFFER_DB_OWNER_PASSWORD', 'COFFER_DB_APP_PASSWORD', 'REDIS_PASSWORD', 'MINIO_ROOT_PASSWORD', 'MINIO_KMS_SECRET_KEY', 'KMS_VAULT_SECRET_ID']) {
      assert.equal(variables.get(name)?.required, true, name);
    }
    assert.doesNotMatch(text, /password:\s*\w|change-me/i);
  });
});
