// `npm run up`: Coffer on embedded defaults, in the foreground until Ctrl-C. Installs the npm
// dependencies, builds, uses PostgreSQL and Redis at the configured URLs or starts private ones
// under .coffer/, creates the owner and app roles, runs `coffer migrate`, then the provisioner
// (the only long-running process with the owner's credentials), the API and the worker (app role
// only: they refuse the owner's), and writes .coffer/local.json so that scripts and people can find the running system.
// Everything it creates on PostgreSQL and Redis is named after this checkout's installation id
// (.coffer/installation.json), so that two checkouts on one machine never share data.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:https';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureDependencies, ensurePostgres, ensureRedis } from './services.mjs';
import { ensureRuntime } from './runtime.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const home = resolve(env.COFFER_HOME ?? join(root, '.coffer'));
const log = (line) => console.error(`[up] ${line}`);
await ensureRuntime({ root, log });
mkdirSync(home, { recursive: true, mode: 0o700 });

if (env.COFFER_SKIP_INSTALL !== '1') {
  await ensureDependencies({ root, log });
  const { build } = await import('./build.mjs');
  log(`built ${await build()} files`);
}

const pg = await ensurePostgres({ adminUrl: env.COFFER_PG_ADMIN_URL, home, log });
const redis = await ensureRedis({ url: env.REDIS_URL, home, log });

// Role passwords are generated once and kept (mode 0600) so that restarts reuse them.
const secretsPath = join(home, 'secrets.json');
const installation = loadInstallation(home, existsSync(secretsPath));
const secrets = existsSync(secretsPath)
  ? JSON.parse(readFileSync(secretsPath, 'utf8'))
  : { owner: randomBytes(24).toString('base64url'), app: randomBytes(24).toString('base64url') };
writeFileSync(secretsPath, JSON.stringify(secrets), { mode: 0o600 });

// The local KMS's master key: generated once, kept beside the secrets (back both up together).
const masterKeyPath = join(home, 'kms-master.key');
if (!existsSync(masterKeyPath)) writeFileSync(masterKeyPath, randomBytes(32).toString('base64'), { mode: 0o600 });

const roles = { owner: env.COFFER_DB_OWNER ?? installation.roles.owner, app: env.COFFER_DB_APP ?? installation.roles.app };
const database = env.COFFER_DB_NAME ?? installation.database;
const require = createRequire(import.meta.url);
const { Client } = require('pg');
const { ensureRoles } = require(join(root, 'dist/libs/database/src/roles.js'));
const { CONFIG_KEYS } = require(join(root, 'dist/libs/config/src/config.schema.js'));
const admin = new Client({ connectionString: pg.adminUrl });
await admin.connect();
await ensureRoles(admin, { owner: { name: roles.owner, password: secrets.owner }, app: { name: roles.app, password: secrets.app } });
await admin.end();

const roleUrl = (role, password) => {
  const url = new URL(pg.adminUrl);
  url.username = role;
  url.password = password;
  url.pathname = `/${database}`;
  return url.toString();
};
const port = Number(env.HTTP_PORT ?? 8080);
const httpsPort = Number(env.HTTPS_PORT ?? 8443);
const metricsPort = Number(env.METRICS_PORT ?? 9464);
// HTTPS with a certificate of the installation's own CA, unless TLS_MODE says otherwise.
const tlsMode = env.TLS_MODE ?? 'internal-ca';
const tlsDir = resolve(env.TLS_DIR ?? join(home, 'tls'));
const caCertPath = tlsMode === 'internal-ca' ? join(tlsDir, 'ca.crt') : null;
const apiUrl = tlsMode === 'off' ? `http://127.0.0.1:${port}` : `https://127.0.0.1:${httpsPort}`;
const tokenFile = join(home, 'bootstrap-token');
const childEnv = {
  ...env,
  COFFER_ENV: 'local',
  DATABASE_OWNER_URL: roleUrl(roles.owner, secrets.owner),
  DATABASE_APP_URL: roleUrl(roles.app, secrets.app),
  REDIS_URL: redis.url,
  ORG_DATABASE_PREFIX: env.ORG_DATABASE_PREFIX ?? installation.orgDatabasePrefix,
  REDIS_KEY_PREFIX: env.REDIS_KEY_PREFIX ?? installation.redisKeyPrefix,
  HTTP_HOST: '127.0.0.1',
  HTTP_PORT: String(port),
  HTTPS_PORT: String(httpsPort),
  METRICS_HOST: '127.0.0.1',
  METRICS_PORT: String(metricsPort),
  TLS_MODE: tlsMode,
  TLS_DIR: tlsDir,
  BOOTSTRAP_TOKEN_FILE: tokenFile,
  KMS_LOCAL_MASTER_KEY_FILE: env.KMS_LOCAL_MASTER_KEY_FILE ?? masterKeyPath,
};

// The API and the worker never see the owner's credentials.
const { DATABASE_OWNER_URL: _owner, ...appEnv } = childEnv;
const children = [];
let stopping = false;
const startApp = (name, env = appEnv) => {
  const child = spawn(process.execPath, ['--enable-source-maps', join(root, `dist/apps/${name}/src/main.js`)], {
    cwd: root,
    env,
    stdio: 'inherit',
  });
  child.on('exit', (code) => {
    if (!stopping) {
      log(`${name} exited with code ${code}; stopping`);
      void shutdown(code || 1);
    }
  });
  children.push(child);
  return child;
};

async function shutdown(code) {
  stopping = true;
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  // The API drains requests in flight for SHUTDOWN_GRACE_MS (25 s by default), then exits.
  const deadline = Date.now() + 35_000;
  while (children.some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await redis.stop();
  await pg.stop();
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

const migrate = spawn(process.execPath, ['--enable-source-maps', join(root, 'dist/apps/cli/src/main.js'), 'migrate'], {
  cwd: root,
  env: { ...childEnv, LOG_LEVEL: 'warn' },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const migrated = await new Promise((done) => migrate.once('exit', done));
if (migrated !== 0) {
  log(`coffer migrate exited with code ${migrated}; stopping`);
  await shutdown(migrated || 1);
}
log('migrated the control plane and every org database');
startApp('provisioner', childEnv);
startApp('api');
const deadline = Date.now() + 60_000;
while (!(await isReady())) {
  if (stopping) await new Promise(() => undefined); // shutdown() exits
  if (Date.now() > deadline) {
    log('the API did not become ready within 60 s');
    await shutdown(1);
  }
  await new Promise((r) => setTimeout(r, 250));
}
startApp('worker');

// The API writes the bootstrap token once, at first start; it moves into local.json (0600).
const localPath = join(home, 'local.json');
let adminToken = existsSync(localPath) ? JSON.parse(readFileSync(localPath, 'utf8')).adminToken ?? null : null;
if (existsSync(tokenFile)) {
  adminToken = readFileSync(tokenFile, 'utf8').trim();
  rmSync(tokenFile);
}
writeFileSync(
  localPath,
  `${JSON.stringify(
    {
      installationId: installation.id,
      apiUrl,
      caCertPath,
      metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
      adminToken,
      databaseUrls: { owner: childEnv.DATABASE_OWNER_URL, app: childEnv.DATABASE_APP_URL },
      // What `npm run cli` needs to reach this installation's services and keys.
      serviceEnv: Object.fromEntries(CONFIG_KEYS.filter((k) => childEnv[k] !== undefined).map((k) => [k, childEnv[k]])),
      redisUrl: redis.url,
      startedAt: new Date().toISOString(),
    },
    null,
    2,
  )}\n`,
  { mode: 0o600 },
);
log(`Coffer is running at ${apiUrl}; admin token and URLs are in ${localPath}. Ctrl-C stops it.`);
if (caCertPath) log(`Its certificate is signed by the local CA ${caCertPath}: trust that file (curl --cacert, NODE_EXTRA_CA_CERTS).`);

/** GET /health/ready; over HTTPS trusting only the CA the API reports (it exists once the API created it). */
async function isReady() {
  const url = `${apiUrl}/health/ready`;
  if (apiUrl.startsWith('http:')) return fetch(url).then((r) => r.ok, () => false);
  if (caCertPath && !existsSync(caCertPath)) return false;
  const ca = caCertPath ? readFileSync(caCertPath) : undefined;
  return new Promise((done) => {
    get(url, { ca, timeout: 3000 }, (res) => {
      res.resume();
      done(res.statusCode === 200);
    })
      .once('error', () => done(false))
      .once('timeout', function () {
        this.destroy();
      });
  });
}

/**
 * This checkout's installation: an id made once and kept in `installation.json` (mode 0600) beside
 * the secrets, and the names derived from it: the control-plane database, the org databases'
 * prefix, the owner and app roles, the Redis key prefix. A second checkout (or a fresh clone after
 * deleting the first) gets another id, so on a shared PostgreSQL and Redis it never finds, nor
 * changes, another installation's databases, roles or queues. A state directory set up before
 * installation ids existed (it has secrets.json) keeps the names it has used, `coffer` and so on.
 */
function loadInstallation(dir, existing) {
  const path = join(dir, 'installation.json');
  if (existsSync(path)) {
    chmodSync(path, 0o600);
    return JSON.parse(readFileSync(path, 'utf8'));
  }
  const id = existing ? null : randomBytes(6).toString('hex');
  const base = id ? `coffer_${id}` : 'coffer';
  const installation = {
    id,
    createdAt: new Date().toISOString(),
    database: base,
    orgDatabasePrefix: `${base}_org_`,
    roles: { owner: id ? `${base}_owner` : 'coffer_owner', app: id ? `${base}_app` : 'coffer_app' },
    redisKeyPrefix: id ? `coffer-${id}` : 'coffer',
  };
  writeFileSync(path, `${JSON.stringify(installation, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  log(id ? `new installation ${id}: database ${base}, roles ${installation.roles.owner} and ${installation.roles.app}` : `${dir} predates installation ids: it keeps the database coffer and its roles`);
  return installation;
}
