import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_KEYS } from './config.schema';
import { ConfigError, loadConfig, redactConfig } from './load-config';

const valid = {
  DATABASE_OWNER_URL: 'postgres://owner:owner-pw@127.0.0.1/coffer',
  DATABASE_APP_URL: 'postgres://app:app-pw@127.0.0.1/coffer',
};

test('defaults fill everything but the database URLs', () => {
  const config = loadConfig(valid);
  assert.equal(config.HTTP_PORT, 8080);
  assert.equal(config.ORG_PROVISION_WAIT_MS, 20_000);
  assert.equal(config.ORG_DATABASE_PREFIX, 'coffer_org_');
});

test('a bad configuration lists every problem at once and no secret value', () => {
  try {
    loadConfig({ DATABASE_APP_URL: 'mysql://app:app-pw@x/y', HTTP_PORT: '99999', ORG_PROVISION_WAIT_MS: 'soon' }, 'required');
    assert.fail('expected a ConfigError');
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(error.problems.map((p) => p.split(':')[0]).sort(), [
      'DATABASE_APP_URL',
      'DATABASE_OWNER_URL',
      'HTTP_PORT',
      'ORG_PROVISION_WAIT_MS',
    ]);
    assert.doesNotMatch(error.message, /app-pw/);
  }
});

test("the API and the worker refuse the owner's credentials; migrate and the provisioner require them", () => {
  assert.throws(() => loadConfig(valid, 'refused'), (error: ConfigError) => {
    assert.deepEqual(error.problems.map((p) => p.split(':')[0]), ['DATABASE_OWNER_URL']);
    assert.doesNotMatch(error.message, /owner-pw/);
    return true;
  });
  assert.equal(loadConfig({ DATABASE_APP_URL: valid.DATABASE_APP_URL }, 'refused').DATABASE_OWNER_URL, undefined);
  assert.throws(() => loadConfig({ DATABASE_APP_URL: valid.DATABASE_APP_URL }, 'required'), /DATABASE_OWNER_URL: required/);
  assert.equal(loadConfig(valid, 'required').DATABASE_OWNER_URL, valid.DATABASE_OWNER_URL);
});

test('redaction hides every secret value', () => {
  const shown = JSON.stringify(redactConfig(loadConfig(valid)));
  assert.doesNotMatch(shown, /owner-pw|app-pw/);
});

test('.env.example lists exactly the variables of the schema', () => {
  const example = readFileSync(join(__dirname, '../../../../.env.example'), 'utf8');
  const listed = [...example.matchAll(/^([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]).sort();
  assert.deepEqual(listed, [...CONFIG_KEYS].sort());
});

test('TLS_MODE=files requires the certificate and key files', () => {
  assert.throws(() => loadConfig({ ...valid, TLS_MODE: 'files', TLS_CERT_FILE: '/etc/coffer/tls.crt' }), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(error.problems, ['TLS_KEY_FILE: required when TLS_MODE=files']);
    return true;
  });
  assert.equal(loadConfig({ ...valid, TLS_MODE: 'files', TLS_CERT_FILE: 'a.crt', TLS_KEY_FILE: 'a.key' }).TLS_MODE, 'files');
  assert.equal(loadConfig(valid).TLS_MODE, 'internal-ca', 'HTTPS unless turned off');
});

test('TLS_MODE=acme refuses names a public CA cannot validate', () => {
  assert.throws(() => loadConfig({ ...valid, TLS_MODE: 'acme' }), /TLS_DOMAINS: ACME needs public DNS names/);
  assert.throws(() => loadConfig({ ...valid, TLS_MODE: 'acme', TLS_DOMAINS: 'vault.example.com,10.0.0.1' }), /TLS_DOMAINS/);
  assert.equal(loadConfig({ ...valid, TLS_MODE: 'acme', TLS_DOMAINS: 'vault.example.com' }).ACME_SELF_CHECK, true);
});
