import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv from 'ajv';
import { CONFIG_KEYS } from '@coffer/config';
import {
  activeServices,
  COMPOSE_DIR,
  COMPOSE_PATH,
  ComposeFile,
  composeVariables,
  parseCompose,
  SEAWEEDFS_COMPOSE_PATH,
  seaweedfsCompose,
} from './compose-file';
import { REPO_ROOT } from '../support/api-process';

const ONE_SHOTS = ['init', 'migrate', 'minio-init', 'seaweedfs-init'];

/** Compose's byte sizes (`512m`, `1g`) and durations (`30s`, `1m30s`). */
const BYTES: Record<string, number> = { b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30 };
function bytes(size: string): number {
  const match = /^(\d+)([bkmg])$/.exec(size);
  assert.ok(match, `${size} is a size`);
  return Number(match[1]) * BYTES[match[2]];
}
function seconds(duration: string): number {
  const match = /^(?:(\d+)m)?(?:(\d+)s)?$/.exec(duration);
  assert.ok(match && duration, `${duration} is a duration`);
  return Number(match[1] ?? 0) * 60 + Number(match[2] ?? 0);
}

/**
 * An exact release, per image: most upstreams release x.y.z; PostgreSQL's and SeaweedFS's releases
 * are x.y; MinIO's are RELEASE.<timestamp>. `latest`, a major (`17`) or a minor line (`7.4`, `1.18`)
 * would move under the installation.
 */
function isExactTag(image: string): boolean {
  const at = image.lastIndexOf(':');
  const [name, tag] = [image.slice(0, at), image.slice(at + 1)];
  if (at < 0 || tag === 'latest') return false;
  if (name === 'postgres') return /^\d+\.\d+-[a-z]+$/.test(tag);
  if (name === 'chrislusf/seaweedfs') return /^\d+\.\d+$/.test(tag);
  if (name.startsWith('quay.io/minio/')) return /^RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ$/.test(tag);
  return /^\d+\.\d+\.\d+(-[a-z]+)?$/.test(tag);
}

/** Log rotation, a memory limit, a stop grace period and a restart policy on every service Compose starts. */
function checkOperatorTooling(compose: ComposeFile) {
  for (const [name, service] of activeServices(compose)) {
    assert.equal(service.logging?.driver, 'json-file', `${name} logs to json-file`);
    assert.ok(bytes(service.logging!.options!['max-size']) <= 100 * 2 ** 20, `${name} rotates its log`);
    assert.ok(Number(service.logging!.options!['max-file']) >= 2, `${name} keeps rotated files`);
    const memory = bytes(service.mem_limit ?? '');
    assert.ok(memory >= 64 * 2 ** 20 && memory <= 4 * 2 ** 30, `${name}: mem_limit ${service.mem_limit}`);
    assert.ok(seconds(service.stop_grace_period ?? '') >= 10, `${name} has a stop grace period`);
    assert.equal(service.restart, ONE_SHOTS.includes(name) ? 'no' : 'unless-stopped', name);
  }
}

/** Every image is pinned to an exact release; Coffer's own is COFFER_IMAGE, which .env must set. */
function checkImages(compose: ComposeFile) {
  for (const [name, service] of activeServices(compose)) {
    if (['api', 'worker', 'provisioner', 'migrate', 'init', 'unsealer', 'seaweedfs-init'].includes(name)) {
      assert.equal(service.image, '${COFFER_IMAGE:?run ./install.sh first}', name);
      continue;
    }
    assert.ok(isExactTag(service.image ?? ''), `${name}: ${service.image} is an exact version tag`);
  }
}

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

  test("Coffer's services get every variable of the config schema, and only those; only migrate, provisioner and init hold the owner's", () => {
    const schemaKeys = [...CONFIG_KEYS].sort();
    const withoutOwner = schemaKeys.filter((k) => k !== 'DATABASE_OWNER_URL');
    assert.deepEqual(Object.keys(compose['x-coffer-env']).sort(), withoutOwner, 'x-coffer-env');
    assert.deepEqual(Object.keys(compose['x-coffer-owner-env']).sort(), schemaKeys, 'x-coffer-owner-env');
    for (const name of ['api', 'worker']) assert.deepEqual(Object.keys(compose.services[name].environment!).sort(), withoutOwner, name);
    for (const name of ['migrate', 'provisioner']) assert.deepEqual(Object.keys(compose.services[name].environment!).sort(), schemaKeys, name);
    const init = Object.keys(compose.services.init.environment!);
    assert.deepEqual(init.filter((k) => !k.startsWith('COFFER_INIT_')).sort(), schemaKeys, 'init');
    const holders = services.filter(([, s]) => JSON.stringify(s.environment ?? {}).includes('COFFER_DB_OWNER_PASSWORD')).map(([name]) => name);
    assert.deepEqual(holders.sort(), ['init', 'migrate', 'provisioner'], "the owner's password reaches these services only");
    assert.equal(compose.services.provisioner.ports, undefined, 'the provisioner publishes nothing');
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
      // The provisioner serves nothing to probe; it exits on a fatal error and is restarted.
      if (name !== 'provisioner') assert.ok(service.healthcheck?.test.length, `${name} has a healthcheck`);
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
      assert.deepEqual(Object.keys(compose.services[name].depends_on!).sort(), ['migrate', 'minio-init', 'openbao', 'postgres', 'redis'], name);
    }
    assert.deepEqual(Object.keys(compose.services.provisioner.depends_on!).sort(), ['migrate', 'openbao', 'redis']);
    assert.deepEqual(Object.keys(compose.services.migrate.depends_on!).sort(), ['init', 'redis'], 'migrate runs after the roles exist');
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
    assert.ok(dataOf('api').includes('/var/lib/coffer'), 'TLS_DIR survives a restart');
    assert.ok(dataOf('migrate').includes('/var/lib/coffer'), 'the bootstrap token migrate writes is kept');
    assert.ok(dataOf('init').includes('/var/lib/coffer-init'), 'the OpenBao keys survive a restart');
    // The AppRole secret id: written by init and the unsealer, only read by the services.
    const mounts = (name: string) => compose.services[name].volumes ?? [];
    for (const name of ['init', 'unsealer']) assert.ok(mounts(name).includes('openbao-approle:/var/lib/coffer-approle'), name);
    for (const name of ['api', 'worker', 'provisioner']) assert.ok(mounts(name).includes('openbao-approle:/var/lib/coffer-approle:ro'), name);
    assert.ok(mounts('unsealer').includes('openbao-keys:/var/lib/coffer-init:ro'), 'the unsealer only reads the keys');
    const holders = services.filter(([, s]) => (s.volumes ?? []).some((v) => v.startsWith('openbao-keys:'))).map(([name]) => name);
    assert.deepEqual(holders.sort(), ['init', 'unsealer'], 'the unseal share reaches these services only');
  });

  test('unattended restart: OpenBao on raft storage, an unsealer that restarts with it, readiness and health that include the KMS', () => {
    const openbao = compose.services.openbao;
    for (const [variable, dir] of [['BAO_LOCAL_CONFIG', '/openbao/file'], ['VAULT_LOCAL_CONFIG', '/vault/file']]) {
      const config = JSON.parse(String(openbao.environment![variable]));
      assert.equal(config.storage.file, undefined, `${variable}: no file storage (deprecated, removed in OpenBao 2.7)`);
      assert.deepEqual(config.storage.raft, { path: dir, node_id: 'openbao' }, variable);
      assert.equal(config.cluster_addr, 'http://openbao:8201', `${variable}: raft needs cluster_addr`);
      assert.equal(config.api_addr, 'http://openbao:8200', variable);
    }
    assert.deepEqual(openbao.volumes!.sort(), ['openbao-raft:/openbao/file', 'vault-raft:/vault/file']);

    // Docker restarts `unless-stopped` services after a reboot and runs no one-shot: the unsealer
    // is one of the former, holds the keys init wrote, and is healthy once OpenBao is unsealed.
    const unsealer = compose.services.unsealer;
    assert.equal(unsealer.restart, 'unless-stopped');
    assert.deepEqual(unsealer.command, ['unseal', '--watch']);
    assert.equal(unsealer.environment!.COFFER_INIT_OPENBAO_KEYS_FILE, compose.services.init.environment!.COFFER_INIT_OPENBAO_KEYS_FILE);
    assert.equal(unsealer.environment!.KMS_VAULT_SECRET_ID_FILE, compose['x-coffer-env'].KMS_VAULT_SECRET_ID_FILE);
    assert.deepEqual(unsealer.depends_on, { openbao: { condition: 'service_healthy' } });
    assert.deepEqual(unsealer.healthcheck!.test, ['CMD', 'coffer', 'healthcheck', 'openbao']);
    assert.equal(unsealer.environment!.COFFER_DB_OWNER_PASSWORD, undefined);

    // The api's healthcheck requires status "ok", which /health/ready gives only with the KMS up;
    // the worker's probes its own /health.
    assert.deepEqual(compose.services.api.healthcheck!.test, ['CMD', 'coffer', 'healthcheck']);
    assert.deepEqual(compose.services.worker.healthcheck!.test, ['CMD', 'coffer', 'healthcheck', 'worker']);
    const entry = readFileSync(join(REPO_ROOT, 'deploy/docker/coffer'), 'utf8');
    assert.match(entry, /JSON\.parse\(body\)\.status === "ok"/);
    assert.match(entry, /worker\) url="http:\/\/127\.0\.0\.1:\$\{WORKER_METRICS_PORT:-\$\(\(metrics \+ 1\)\)\}\/health"/);
    assert.match(entry, /unseal\) shift; exec node --enable-source-maps dist\/apps\/cli\/src\/compose-unseal\.js "\$@"/);
    const controller = readFileSync(join(REPO_ROOT, 'apps/api/src/controllers/health.controller.ts'), 'utf8');
    assert.match(controller, /checks: \{ postgres, redis, kms \}/);
  });

  test('MinIO encrypts server-side, and OpenBao runs as Vault by changing the image alone', () => {
    const minio = compose.services.minio.environment!;
    assert.match(String(minio.MINIO_KMS_SECRET_KEY), /^coffer-minio:\$\{MINIO_KMS_SECRET_KEY:\?/);
    assert.match(readFileSync(join(COMPOSE_DIR, 'minio/minio-init.sh'), 'utf8'), /mc encrypt set sse-s3 /);
    const openbao = compose.services.openbao;
    const config = (v: unknown) => JSON.parse(String(v)).storage.raft.path;
    assert.equal(config(openbao.environment!.BAO_LOCAL_CONFIG), '/openbao/file');
    assert.equal(config(openbao.environment!.VAULT_LOCAL_CONFIG), '/vault/file');
    assert.deepEqual(openbao.volumes!.map((v) => v.split(':')[1]).sort(), ['/openbao/file', '/vault/file']);
    assert.match(openbao.healthcheck!.test.join(' '), /command -v bao \|\| command -v vault/);
  });

  test('every image is an exact release: third-party ones by tag, MinIO from quay.io (Docker Hub no longer serves it), Valkey for Redis', () => {
    checkImages(compose);
    for (const bad of ['postgres:17-bookworm', 'redis:7.4-bookworm', 'hashicorp/vault:1.18', 'minio/minio:latest', 'valkey/valkey:8.1', 'chrislusf/seaweedfs:latest']) {
      assert.equal(isExactTag(bad), false, `${bad} is refused`);
    }
    assert.match(compose.services.minio.image!, /^quay\.io\/minio\/minio:RELEASE\./);
    assert.match(compose.services['minio-init'].image!, /^quay\.io\/minio\/mc:RELEASE\./);
    assert.match(compose.services.redis.image!, /^valkey\/valkey:/);
    // The Vault alternative the comment and the README name is exact too.
    const vault = [...text.matchAll(/hashicorp\/vault:\S+/g), ...readFileSync(join(COMPOSE_DIR, 'README.md'), 'utf8').matchAll(/hashicorp\/vault:[^\s`]+/g)];
    assert.ok(vault.length >= 2);
    for (const [image] of vault) assert.ok(isExactTag(image.replace(/[.:]$/, '')), image);
  });

  test('every service rotates its json-file log, has a memory limit, a stop grace period and a restart policy; the api drains for 30 s', () => {
    checkOperatorTooling(compose);
    assert.ok(seconds(compose.services.api.stop_grace_period!) >= 30, 'the api lets requests in flight finish');
    assert.ok(seconds(compose.services.worker.stop_grace_period!) >= 30, 'the worker lets jobs in progress finish');
    assert.ok(seconds(compose.services.postgres.stop_grace_period!) >= 30, 'PostgreSQL shuts down cleanly');
    // A full Valkey refuses writes (noeviction, maxmemory) before its container hits mem_limit.
    const command = compose.services.redis.command!.join(' ');
    const maxmemory = /--maxmemory (\d+)mb/.exec(command);
    assert.ok(maxmemory && /--maxmemory-policy noeviction/.test(command), command);
    assert.ok(Number(maxmemory[1]) * 2 ** 20 < bytes(compose.services.redis.mem_limit!));
    // A copy without them fails.
    const bare = parseCompose(text.replace(/^ {4}(logging|mem_limit|stop_grace_period):.*$/gm, ''));
    assert.throws(() => checkOperatorTooling(bare));
  });

  test('its secrets are required from .env, never written into the file', () => {
    const variables = composeVariables(text);
    for (const name of ['POSTGRES_PASSWORD', 'COFFER_DB_OWNER_PASSWORD', 'COFFER_DB_APP_PASSWORD', 'REDIS_PASSWORD', 'MINIO_ROOT_PASSWORD', 'MINIO_KMS_SECRET_KEY']) {
      assert.equal(variables.get(name)?.required, true, name);
    }
    // The AppRole secret id is no longer a setting of .env: it expires, in a file the unsealer renews.
    assert.equal(compose['x-coffer-env'].KMS_VAULT_SECRET_ID, '');
    assert.equal(compose['x-coffer-env'].KMS_VAULT_SECRET_ID_FILE, '/var/lib/coffer-approle/secret-id');
    assert.doesNotMatch(text, /password:\s*\w|change-me/i);
  });
});

describe('deploy/compose/compose.seaweedfs.yaml over compose.yaml (the SeaweedFS variant)', () => {
  const compose = seaweedfsCompose();
  const active = activeServices(compose);
  const names = active.map(([name]) => name);

  test('the merged file validates against the Compose specification schema', () => {
    const validate = composeValidator();
    assert.equal(validate(compose), true, JSON.stringify(validate.errors, null, 2));
  });

  test('runs SeaweedFS instead of MinIO: minio and minio-init are never started, api and worker wait for seaweedfs-init', () => {
    assert.deepEqual(names.filter((n) => /minio|seaweedfs/.test(n)).sort(), ['seaweedfs', 'seaweedfs-init']);
    for (const name of ['api', 'worker']) {
      assert.deepEqual(Object.keys(compose.services[name].depends_on!).sort(), ['init', 'openbao', 'postgres', 'redis', 'seaweedfs-init'], name);
      assert.equal(compose.services[name].environment!.S3_ENDPOINT, 'http://seaweedfs:8333', name);
    }
    assert.deepEqual(compose.services['seaweedfs-init'].depends_on, { seaweedfs: { condition: 'service_healthy' } });
    assert.ok(compose.services.seaweedfs.healthcheck?.test.length);
    for (const [name, service] of active) {
      for (const [target, { condition }] of Object.entries(service.depends_on ?? {})) {
        assert.ok(names.includes(target), `${name} depends on ${target}, which runs`);
        assert.equal(condition, ONE_SHOTS.includes(target) ? 'service_completed_successfully' : 'service_healthy', `${name} -> ${target}`);
      }
    }
  });

  test('SeaweedFS sits on the internal network only, keeps its data in a declared volume, and mounts files that exist', () => {
    for (const name of ['seaweedfs', 'seaweedfs-init']) assert.deepEqual(compose.services[name].networks, ['internal'], name);
    for (const [name, service] of active) {
      for (const volume of service.volumes ?? []) {
        const [source] = volume.split(':');
        if (source.startsWith('./')) assert.ok(existsSync(join(COMPOSE_DIR, source)), `${name}: ${source}`);
        else assert.ok(source in compose.volumes, `${name}: volume ${source} is declared`);
      }
    }
    assert.ok(compose.services.seaweedfs.volumes!.includes('seaweedfs-data:/data'));
  });

  test('every image is exact; every service has log rotation, a memory limit, a stop grace period and a restart policy', () => {
    checkImages(compose);
    checkOperatorTooling(compose);
  });

  test('server-side encryption: the key-encryption key comes from a required .env secret, never from the file', () => {
    const text = readFileSync(SEAWEEDFS_COMPOSE_PATH, 'utf8');
    assert.equal(compose.services.seaweedfs.environment!.WEED_S3_SSE_KEY, '${MINIO_KMS_SECRET_KEY:?run ./install.sh first}');
    const variables = composeVariables(text);
    for (const name of ['MINIO_ROOT_PASSWORD', 'MINIO_COFFER_SECRET_KEY', 'MINIO_KMS_SECRET_KEY']) assert.equal(variables.get(name)?.required, true, name);
    assert.doesNotMatch(text, /password:\s*\w|change-me/i);
  });
});
