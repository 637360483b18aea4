import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '@coffer/config';
import { spawnSync } from 'node:child_process';
import {
  composeVariables,
  INSTALL_SCRIPT,
  interpolate,
  parseCompose,
  parseEnvFile,
  runInstall,
  SEAWEEDFS_COMPOSE_PATH,
  seaweedfsCompose,
  SHELLS,
} from './compose-file';
import { REPO_ROOT } from '../support/api-process';

const SECRET = /PASSWORD|SECRET|KMS_SECRET_KEY|ACCESS_KEY/;
const VERSION = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).version as string;

/** The environment compose gives the api, interpolated over an .env's values. */
function apiEnvironment(compose: ReturnType<typeof parseCompose>, env: Record<string, string>) {
  return Object.fromEntries(Object.entries(compose.services.api.environment!).map(([k, v]) => [k, interpolate(String(v ?? ''), env)]));
}

// POSIX sh, run as `sh` and by name under dash and bash --posix: every test below runs under each.
for (const shell of SHELLS) {
  describe(`deploy/compose/install.sh under ${shell.join(' ')}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'coffer-install-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    let runs = 0;
    const install = (...args: string[]) => {
      const envFile = join(dir, `env-${++runs}`);
      return { envFile, result: runInstall(['--out', envFile, ...args], shell) };
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
      assert.match(env.get('KMS_VAULT_ROLE_ID')!, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a random UUID');
      assert.equal(env.get('COFFER_IMAGE'), `coffer:${VERSION}`, "the image is tagged with this checkout's version, not latest");
      assert.equal(env.has('COMPOSE_FILE'), false, 'MinIO is the default object store');
      // The next step is printed, and a default that builds the image says --build.
      assert.match(result.stdout, /^wrote .* \(mode 0600\)\. Next: cd .* && docker compose up -d --build\n$/);
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
      const result = runInstall(['--out', envFile, ...acmeSite], shell);
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
        const apiEnv = apiEnvironment(compose, env);
        const config = loadConfig(apiEnv);
        assert.equal(config.KMS_PROVIDER, 'vault');
        // The AppRole's secret id expires and is re-issued into a volume: never in .env.
        assert.deepEqual([config.KMS_VAULT_SECRET_ID, config.KMS_VAULT_SECRET_ID_FILE, env.KMS_VAULT_SECRET_ID], [undefined, '/var/lib/coffer-approle/secret-id', undefined]);
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
      const command = `${shell.join(' ')} '${INSTALL_SCRIPT}' --out '${envFile}'`;
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

    test('--help prints the usage with every option on stdout, exits 0 and writes nothing', () => {
      for (const flag of ['--help', '-h']) {
        const { envFile, result } = install(...acmeSite, flag);
        assert.equal(result.status, 0, result.stderr);
        assert.match(result.stdout, /^usage: install\.sh /);
        for (const option of ['--domain', '--acme-email', '--acme-directory', '--storage', '--image', '--out', '--help']) {
          assert.ok(result.stdout.includes(option), `${flag} documents ${option}`);
        }
        assert.equal(result.stderr, '');
        assert.equal(existsSync(envFile), false);
      }
    });

    test('an unknown option, an option without its value or a stray argument exits 64 with a clear message and writes nothing', () => {
      const cases: [string[], RegExp][] = [
        [['--domian', 'kb.example.com'], /^install: unknown option --domian \(see --help\)\n$/],
        [['--env-file=x'], /^install: unknown option --env-file=x \(see --help\)\n$/],
        [[...acmeSite, '--acme-directory'], /^install: --acme-directory needs a value \(see --help\)\n$/],
        [[...acmeSite, 'kb.example.org'], /^install: unexpected argument kb\.example\.org \(see --help\)\n$/],
        [[...acmeSite, '--storage', 'ceph'], /^install: --storage must be minio or seaweedfs, not ceph\n$/],
        [[...acmeSite, '--acme-directory', 'http://acme.example/dir'], /^install: --acme-directory must be an https URL\n$/],
      ];
      for (const [args, message] of cases) {
        const { envFile, result } = install(...args);
        assert.equal(result.status, 64, `${args.join(' ')}: ${result.stderr}`);
        assert.match(result.stderr, message);
        assert.equal(result.stdout, '');
        assert.equal(existsSync(envFile), false);
      }
    });

    test('--name=value equals --name value; --acme-directory and --image are written as given', () => {
      const { envFile, result } = install(
        '--domain=KB.Example.com',
        '--acme-email=ops@example.com',
        '--acme-directory=https://acme-staging-v02.api.letsencrypt.org/directory',
        '--image',
        'registry.example/coffer:0.1.0',
      );
      assert.equal(result.status, 0, result.stderr);
      const env = parseEnvFile(readFileSync(envFile, 'utf8'));
      assert.equal(env.get('TLS_DOMAINS'), 'kb.example.com');
      assert.equal(env.get('ACME_DIRECTORY_URL'), 'https://acme-staging-v02.api.letsencrypt.org/directory');
      assert.equal(env.get('COFFER_IMAGE'), 'registry.example/coffer:0.1.0');
      assert.doesNotMatch(result.stdout, /--build/, 'an image from elsewhere is not built');
    });

    test('--storage seaweedfs selects compose.seaweedfs.yaml, whose every required variable it writes, and the api then talks to SeaweedFS', () => {
      const { envFile, result } = install(...acmeSite, '--storage', 'seaweedfs');
      assert.equal(result.status, 0, result.stderr);
      const env = parseEnvFile(readFileSync(envFile, 'utf8'));
      assert.equal(env.get('COMPOSE_FILE'), 'compose.yaml:compose.seaweedfs.yaml');
      const overrideVariables = composeVariables(readFileSync(SEAWEEDFS_COMPOSE_PATH, 'utf8'));
      for (const [name, { required }] of overrideVariables) if (required) assert.ok(env.has(name), `${name} is written`);
      const config = loadConfig(apiEnvironment(seaweedfsCompose(), Object.fromEntries(env)));
      assert.equal(config.S3_ENDPOINT, 'http://seaweedfs:8333');
      assert.equal(config.S3_ACCESS_KEY, env.get('MINIO_COFFER_ACCESS_KEY'));
    });
  });
}

describe('deploy/compose/install.sh needs only a POSIX shell and openssl', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-install-path-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  /** A PATH holding the POSIX utilities the script uses and, if asked, openssl: no node, no npm. */
  const pathWith = (name: string, tools: string[]) => {
    const bin = join(dir, name);
    mkdirSync(bin);
    for (const tool of tools) {
      const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
      assert.ok(found, `${tool} is on this machine`);
      symlinkSync(found, join(bin, tool));
    }
    return bin;
  };
  const POSIX_TOOLS = ['cat', 'chmod', 'cut', 'date', 'dirname', 'grep', 'ln', 'rm', 'sed', 'tr'];

  test('with only those on the PATH it writes .env; node and npm are not there to use', () => {
    const bin = pathWith('with-openssl', [...POSIX_TOOLS, 'openssl']);
    const envFile = join(dir, 'env');
    const result = runInstall(['--out', envFile, '--domain', 'coffer.internal'], ['/bin/sh'], { PATH: bin });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(parseEnvFile(readFileSync(envFile, 'utf8')).get('TLS_MODE'), 'internal-ca');
    const node = spawnSync('/bin/sh', ['-c', 'command -v node || command -v npm'], { env: { PATH: bin }, encoding: 'utf8' });
    assert.notEqual(node.status, 0);
    assert.equal(node.stdout, '');
  });

  test('without openssl it says so and writes nothing', () => {
    const bin = pathWith('without-openssl', POSIX_TOOLS);
    const envFile = join(dir, 'env-without');
    const result = runInstall(['--out', envFile, '--domain', 'coffer.internal'], ['/bin/sh'], { PATH: bin });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^install: openssl is required/);
    assert.equal(existsSync(envFile), false);
  });

  test('npm run install:compose is only an alias of it; the Node installer is gone', () => {
    const scripts = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).scripts;
    assert.equal(scripts['install:compose'], 'sh deploy/compose/install.sh');
    assert.equal(existsSync(join(REPO_ROOT, 'scripts/install-compose.mjs')), false);
  });
});
