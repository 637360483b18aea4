// `npm run install:compose -- --domain kb.example.com --acme-email ops@example.com`: writes
// deploy/compose/.env (mode 0600) with fresh random secrets and the site's settings, for
// `docker compose up` in deploy/compose. Asks for the domain and the e-mail only when they are
// not given and a terminal is there to answer. Never overwrites an existing file: the secrets in
// it are what the databases, OpenBao and MinIO were set up with.
//
// Flags: --domain NAME, --acme-email ADDRESS, --acme-directory URL (e.g. Let's Encrypt staging),
// --out PATH (default deploy/compose/.env; not --env-file, which Node 20 takes for itself).
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const LETS_ENCRYPT = 'https://acme-v02.api.letsencrypt.org/directory';
const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** 256 bits, hex: safe inside URLs (the database and Redis URLs carry these passwords). */
const secret = () => randomBytes(32).toString('hex');

/** A name a public ACME CA can validate: dotted, not an address, not a private suffix. */
export function isPublicName(domain) {
  return domain.includes('.') && !/^[\d.]+$/.test(domain) && !/\.(local|localhost|internal|lan|home\.arpa)$/.test(domain);
}

export function renderEnv({ domain, acmeEmail, acmeDirectory = LETS_ENCRYPT, now = new Date() }) {
  const acme = isPublicName(domain);
  const site = acme
    ? ['TLS_MODE=acme', `TLS_DOMAINS=${domain}`, `ACME_EMAIL=${acmeEmail}`, `ACME_DIRECTORY_URL=${acmeDirectory}`]
    : [
        '# Not a public DNS name: a CA of this installation signs the certificate (clients trust',
        '# /var/lib/coffer/tls/ca.crt of the api container). Use a public name for Let\'s Encrypt.',
        'TLS_MODE=internal-ca',
        `TLS_DOMAINS=${domain}`,
      ];
  return [
    `# Written by npm run install:compose on ${now.toISOString()}. Read by deploy/compose/compose.yaml.`,
    '# SECRET: keep it mode 0600 and back it up with the OpenBao keys (deploy/compose/README.md).',
    '# Other Coffer settings (.env.example) may be added here; compose.yaml passes them on.',
    '',
    '# Names the volumes and networks (coffer_postgres-data, ...).',
    'COMPOSE_PROJECT_NAME=coffer',
    '',
    '# --- Site ----------------------------------------------------------------------------',
    ...site,
    'LOG_LEVEL=info',
    'COFFER_IMAGE=coffer:latest',
    '',
    '# --- PostgreSQL: the superuser (init only), the owner and the app role -----------------',
    `POSTGRES_PASSWORD=${secret()}`,
    `COFFER_DB_OWNER_PASSWORD=${secret()}`,
    `COFFER_DB_APP_PASSWORD=${secret()}`,
    '',
    '# --- Redis ---------------------------------------------------------------------------',
    `REDIS_PASSWORD=${secret()}`,
    '',
    '# --- MinIO: root, the server-side encryption key, the bucket and Coffer\'s user ---------',
    `MINIO_ROOT_USER=coffer-root-${randomBytes(4).toString('hex')}`,
    `MINIO_ROOT_PASSWORD=${secret()}`,
    `MINIO_KMS_SECRET_KEY=${randomBytes(32).toString('base64')}`,
    'MINIO_BUCKET=coffer',
    `MINIO_COFFER_ACCESS_KEY=coffer-${randomBytes(8).toString('hex')}`,
    `MINIO_COFFER_SECRET_KEY=${secret()}`,
    '',
    '# --- OpenBao: the AppRole coffer init registers and the api and worker log in with ------',
    `KMS_VAULT_ROLE_ID=${randomUUID()}`,
    `KMS_VAULT_SECRET_ID=${secret()}`,
    '',
  ].join('\n');
}

async function main() {
  const { values } = parseArgs({
    options: {
      domain: { type: 'string' },
      'acme-email': { type: 'string' },
      'acme-directory': { type: 'string' },
      out: { type: 'string' },
    },
  });
  const envFile = resolve(values.out ?? join(root, 'deploy/compose/.env'));
  if (existsSync(envFile)) {
    return fail(`${envFile} exists; not overwriting it (its secrets are what the services were set up with). Move it away to start over.`, 1);
  }
  const interactive = process.stdin.isTTY && process.stdout.isTTY;
  const prompt = interactive ? createInterface({ input: process.stdin, output: process.stdout }) : null;
  // Lines are read in order even when typed (or pasted) ahead of the question; EOF answers nothing.
  const lines = prompt?.[Symbol.asyncIterator]();
  const ask = async (question) => {
    if (!lines) return undefined;
    process.stdout.write(question);
    const { value, done } = await lines.next();
    return done ? undefined : value;
  };
  try {
    const domain = (values.domain ?? (await ask('Domain name of this Coffer (e.g. kb.example.com): ')) ?? '').trim().toLowerCase();
    if (!domain) return fail('--domain is required (the name clients use to reach Coffer)', 64);
    if (!HOSTNAME.test(domain)) return fail(`--domain ${domain} is not a host name`, 64);
    let acmeEmail = values['acme-email'];
    if (isPublicName(domain) && acmeEmail === undefined) {
      acmeEmail = (await ask("E-mail for Let's Encrypt expiry notices: "))?.trim();
    }
    if (isPublicName(domain) && !EMAIL.test(acmeEmail ?? '')) {
      return fail(`--acme-email is required for ${domain} (Let's Encrypt account contact)`, 64);
    }
    const acmeDirectory = values['acme-directory'];
    if (acmeDirectory !== undefined && !/^https:\/\/\S+$/.test(acmeDirectory)) return fail('--acme-directory must be an https URL', 64);
    // wx: created only if absent, even if another install races this one.
    writeFileSync(envFile, renderEnv({ domain, acmeEmail, acmeDirectory }), { flag: 'wx', mode: 0o600 });
    const where = relative(process.cwd(), dirname(envFile)) || '.';
    console.log(`wrote ${envFile} (mode 0600). Next: cd ${where} && docker compose up -d --build`);
  } finally {
    prompt?.close();
  }
}

function fail(message, code) {
  console.error(`install: ${message}`);
  process.exitCode = code;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
