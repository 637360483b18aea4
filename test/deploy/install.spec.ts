import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '@coffer/config';
import { spawnSync } from 'node:child_process';
import { composeVariables, INSTALL_SCRIPT, interpolate, parseCompose, parseEnvFile, runInstall } from './compose-file';

const SECRET = /PASSWORD|SECRET|KMS_SECRET_KEY|ACCESS_KEY/;

describe('npm run install:compose', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-install-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let runs = 0;
  const install = (...args: string[]) => {
    const envFile = join(dir, `env-${++runs}`);
    return { envFile, result: runInstall(['--out', envFile, ...args]) };
  };
  const acmeSite = ['--domain', 'kb.example.com', '--acme-email', 'ops@example.com'];

  test('writes a complete .env (mode 0600): every value set, no placeholder, secrets long and random', () => {
    const { envFile, result } = install(...acmeSite);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(statSync(envFile).mode & 0o777, 0o600);
    const text = readFileSync(envFile, 'utf8');
    assert.doesNotMatch(text, /change-me|changeme|<[a-z -]+>|TODO|xxx/i);
    const env = parseEnvFile(text);
    for (const [key, value] of env) assert.ok(value.length > 0, `${key} has a value`);
    assert.equal(env.get('TLS_MODE'), 'acme');
    assert.equal(env.get('TLS_DOMAINS'), 'kb.example.com');
    assert.equal(env.get('ACME_EMAIL'), 'ops@example.com');
    const secrets = [...env].filter(([key]) => SECRET.test(key));
    assert.ok(secrets.length >= 8, 'every password and key');
    for (const [key, value] of secrets) {
      // 256-bit values: 64 hex digits, 44 base64 characters; access keys are names, not secrets.
      assert.ok(value.length >= (key.endsWith('ACCESS_KEY') ? 16 : 44), `${key} is long`);
    }
    assert.equal(new Set(secrets.map(([, v]) => v)).size, secrets.length, 'no secret is reused');
    assert.equal(Buffer.from(env.get('MINIO_KMS_SECRET_KEY')!, 'base64').length, 32, "MinIO's key is 256 bits");
  });

  test('two installs share no secret', () => {
    const first = parseEnvFile(readFileSync(install(...acmeSite).envFile, 'utf8'));
    const second = parseEnvFile(readFileSync(install(...acmeSite).envFile, 'utf8'));
    for (const [key, value] of first) {
      if (SECRET.test(key) || key === 'KMS_VAULT_ROLE_ID' || key === 'MINIO_ROOT_USER') assert.notEqual(second.get(key), value, key);
    }
  });

  test('refuses to overwrite an existing .env and leaves it as it was', () => {
    const envFile = join(dir, 'existing.env');
    writeFileSync(envFile, 'POSTGRES_PASSWORD=the-one-the-database-has\n');
    const result = runInstall(['--out', envFile, ...acmeSite]);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /exists; not overwriting it/);
    assert.equal(readFileSync(envFile, 'utf8'), 'POSTGRES_PASSWORD=the-one-the-database-has\n');
  });

  test('the .env it writes fills every variable compose.yaml requires, and each of its variables is used there', () => {
    const env = parseEnvFile(readFileSync(install(...acmeSite).envFile, 'utf8'));
    const variables = composeVariables();
    for (const [name, { required }] of variables) if (required) assert.ok(env.has(name), `${name} is written`);
    // COMPOSE_PROJECT_NAME is read by Compose itself.
    for (const name of env.keys()) if (name !== 'COMPOSE_PROJECT_NAME') assert.ok(variables.has(name), `${name} is used by compose.yaml`);
  });

  test('with that .env, compose gives the api a configuration Coffer accepts', () => {
    for (const site of [acmeSite, ['--domain', 'coffer.internal']]) {
      const env = Object.fromEntries(parseEnvFile(readFileSync(install(...site).envFile, 'utf8')));
      const compose = parseCompose();
      const apiEnv = Object.fromEntries(
        Object.entries(compose.services.api.environment!).map(([k, v]) => [k, interpolate(String(v ?? ''), env)]),
      );
      const config = loadConfig(apiEnv);
      assert.equal(config.KMS_PROVIDER, 'vault');
      assert.equal(config.KMS_VAULT_SECRET_ID, env.KMS_VAULT_SECRET_ID);
      assert.equal(new URL(config.DATABASE_APP_URL).password, env.COFFER_DB_APP_PASSWORD);
      assert.equal(config.TLS_MODE, site === acmeSite ? 'acme' : 'internal-ca');
    }
  });

  test('a name no public CA can validate gets the internal CA and needs no e-mail', () => {
    const { envFile, result } = install('--domain', 'coffer.internal');
    assert.equal(result.status, 0, result.stderr);
    const env = parseEnvFile(readFileSync(envFile, 'utf8'));
    assert.equal(env.get('TLS_MODE'), 'internal-ca');
    assert.equal(env.has('ACME_EMAIL'), false);
  });

  test('in a terminal it asks for the domain and the e-mail, and nothing else', () => {
    const envFile = join(dir, 'interactive.env');
    // script(1) gives the installer a terminal; the answers are typed ahead.
    const command = `'${process.execPath}' '${INSTALL_SCRIPT}' --out '${envFile}'`;
    const result = spawnSync('script', ['-qec', command, '/dev/null'], { input: 'KB.Example.org\nops@example.org\n', encoding: 'utf8', timeout: 30_000 });
    assert.equal(result.status, 0, result.stdout);
    const prompts = ['Domain name of this Coffer (e.g. kb.example.com): ', "E-mail for Let's Encrypt expiry notices: "];
    for (const prompt of prompts) assert.equal(result.stdout.split(prompt).length, 2, `asked once: ${prompt}`);
    // Once the prompts, the terminal's echo of the answers and the closing line are taken away, nothing is left.
    const rest = [...prompts, 'KB.Example.org', 'ops@example.org'].reduce((out, text) => out.split(text).join(''), result.stdout);
    assert.equal(rest.replace(/wrote .*/, '').trim(), '');
    const env = parseEnvFile(readFileSync(envFile, 'utf8'));
    assert.equal(env.get('TLS_DOMAINS'), 'kb.example.org');
    assert.equal(env.get('ACME_EMAIL'), 'ops@example.org');
  });

  test('without a terminal to ask, a missing or bad domain or e-mail is a usage error and writes nothing', () => {
    for (const args of [[], ['--domain', 'kb.example.com'], ['--domain', 'kb.example.com', '--acme-email', 'nobody'], ['--domain', 'bad name']]) {
      const { envFile, result } = install(...args);
      assert.equal(result.status, 64, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, /^install: --(domain|acme-email)/);
      assert.equal(existsSync(envFile), false);
    }
  });
});
