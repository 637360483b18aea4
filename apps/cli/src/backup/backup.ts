import { randomBytes, createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { lstat, mkdtemp, open, readdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import type { AppConfig } from '@coffer/config';
import { databaseOf, ownerUrlOf, roleOf, schemaVersion, withClient, withDatabase } from '@coffer/database';
import { createStorageDriver, StorageObjectNotFound } from '@coffer/storage';
import { CommandRefused } from '../usage-error';
import { backupSecret, BundleWriter } from './bundle';
import { BackupManifest, cofferVersion, masterKeyCheck } from './manifest';
import { pgDump, toolMajor } from './pg-tools';
import { Progress, size } from './progress';

export interface BackupOptions {
  file: string;
  /** The objects themselves, not only their listing. */
  objects: boolean;
  keyFile?: string;
  progress?: Progress;
}

export interface BackupSummary {
  file: string;
  bytes: number;
  sha256: string;
  databases: number;
  organizations: number;
  stateFiles: number;
  objects: { count: number; bytes: number; included: boolean };
  notIncluded: string[];
}

/**
 * `coffer backup <file>` (docs/adr/0012-backup.md): with the owner's credentials, one encrypted
 * bundle of the org databases, then the control plane (pg_dump, each a consistent snapshot),
 * taken while org creation is held off (a SHARE lock on the registry), then Coffer's state
 * directory, then the objects' listing with hashes (and the objects with `--objects`). Written
 * beside its destination and renamed into place when complete.
 */
export async function backupInstallation(config: AppConfig, options: BackupOptions): Promise<BackupSummary> {
  const progress = options.progress ?? new Progress('backup');
  const file = resolve(options.file);
  if (existsSync(file)) throw new CommandRefused(`${file} exists: name a new file`);
  if (!existsSync(dirname(file))) throw new CommandRefused(`the directory ${dirname(file)} does not exist`);
  const secret = await backupSecret(options.keyFile);
  const ownerUrl = ownerUrlOf(config);
  const dump = toolMajor('pg_dump');
  const server = await withClient(ownerUrl, (c) => c.query<{ v: string; n: string }>("SELECT current_setting('server_version') AS v, current_setting('server_version_num') AS n").then((r) => r.rows[0]));
  if (dump.major < Math.floor(Number(server.n) / 10000)) {
    throw new CommandRefused(`pg_dump ${dump.version} is older than the server (PostgreSQL ${server.v}): install the client tools of version ${Math.floor(Number(server.n) / 10000)} or newer`);
  }
  const kms: BackupManifest['kms'] =
    config.KMS_PROVIDER === 'local'
      ? { provider: 'local', masterKeyCheck: masterKeyCheck(config), note: 'the wrapped org keys are in the control-plane dump; the master key is NOT in this bundle: keep it apart' }
      : {
          provider: 'vault',
          address: config.KMS_VAULT_ADDR ?? '',
          mount: config.KMS_VAULT_MOUNT,
          keyPrefix: config.KMS_VAULT_KEY_PREFIX ?? '',
          note: 'the org keys stay in OpenBao/Vault (transit keys are not exportable): back up its data volume and unseal keys apart',
        };

  const temp = `${file}.${randomBytes(4).toString('hex')}.partial`;
  const writer = await BundleWriter.create(temp, secret);
  secret.fill(0);
  const scratch = await mkdtemp(join(tmpdir(), 'coffer-backup-'));
  try {
    const startedAt = new Date().toISOString();
    progress.say(`writing ${file} (PostgreSQL ${server.v}, pg_dump ${dump.version}, KMS ${config.KMS_PROVIDER})`);
    const databases: BackupManifest['databases'] = [];
    const orgsWithoutDatabase: BackupManifest['orgsWithoutDatabase'] = [];
    const controlDatabase = databaseOf(ownerUrl);

    // Org creation waits while this transaction holds the registry: no org appears or becomes
    // active between the org dumps and the control plane's. Each dump is a snapshot of its own.
    await withClient(ownerUrl, async (control) => {
      await control.query('BEGIN');
      try {
        await control.query("SET LOCAL lock_timeout = '60s'");
        await control.query('LOCK TABLE organizations IN SHARE MODE');
        const { rows: orgs } = await control.query<{ id: string; slug: string; status: string; database_name: string }>(
          'SELECT id, slug, status, database_name FROM organizations ORDER BY created_at, id',
        );
        const { rows: existing } = await control.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname = ANY($1)', [orgs.map((o) => o.database_name)]);
        const present = new Set(existing.map((r) => r.datname));
        progress.say(`${orgs.length} organization(s); org creation waits until the databases are dumped`);
        // The orgs first, the control plane last: every key version an org's rows name (a
        // rotation under way) is then in the control plane's dump.
        for (const org of orgs) {
          const summary = { id: org.id, slug: org.slug, status: org.status };
          if (!present.has(org.database_name)) {
            orgsWithoutDatabase.push(summary);
            progress.say(`organization ${org.slug} (${org.status}) has no database yet: registry row only`);
            continue;
          }
          const part = `databases/${org.database_name}.dump`;
          const version = await withClient(withDatabase(ownerUrl, org.database_name), schemaVersion);
          await dumpInto(writer, progress, ownerUrl, org.database_name, part);
          databases.push({ role: 'org', database: org.database_name, part, schemaVersion: version, org: summary });
        }
        const part = 'databases/control.dump';
        const version = await schemaVersion(control);
        await dumpInto(writer, progress, ownerUrl, controlDatabase, part);
        databases.unshift({ role: 'control', database: controlDatabase, part, schemaVersion: version });
      } finally {
        await control.query('ROLLBACK').catch(() => undefined);
      }
    });

    const state = await backupState(config, writer, progress);
    const objects = await backupObjects(config, writer, progress, options.objects, scratch);
    const manifest: BackupManifest = {
      format: 'coffer-backup-manifest',
      version: 1,
      coffer: cofferVersion(),
      startedAt,
      finishedAt: new Date().toISOString(),
      installation: {
        controlDatabase,
        orgDatabasePrefix: config.ORG_DATABASE_PREFIX,
        roles: { owner: roleOf(ownerUrl), app: roleOf(config.DATABASE_APP_URL) },
        postgres: server.v,
        pgDump: dump.version,
      },
      kms,
      databases,
      orgsWithoutDatabase,
      state,
      objects,
      parts: writer.parts,
    };
    const sha256 = await writer.finish(manifest);
    await rename(temp, file);
    progress.say(`done in ${progress.elapsed()}: ${file}, ${size(writer.bytesWritten)}, sha256 ${sha256}`);
    const notIncluded = [
      config.KMS_PROVIDER === 'local'
        ? `the local KMS master key (${config.KMS_LOCAL_MASTER_KEY_FILE ?? 'KMS_LOCAL_MASTER_KEY'}): without it the bundle's databases cannot be decrypted`
        : 'the OpenBao/Vault data and unseal keys (its volumes): without them the org keys are gone',
      'the configuration (.env, role passwords, S3 credentials); Redis (queues only: due work is in PostgreSQL)',
      ...(options.objects ? [] : ['the objects themselves (their listing with sha256 only): back up the object store apart, or use --objects']),
      ...(config.TLS_CERT_FILE ? [`TLS_CERT_FILE/TLS_KEY_FILE (${config.TLS_CERT_FILE}): your own certificate`] : []),
    ];
    return {
      file,
      bytes: writer.bytesWritten,
      sha256,
      databases: databases.length,
      organizations: databases.length - 1 + orgsWithoutDatabase.length,
      stateFiles: state.length,
      objects: { count: objects.count, bytes: objects.bytes, included: objects.included },
      notIncluded,
    };
  } catch (error) {
    await writer.abort();
    await rm(temp, { force: true });
    throw error;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function dumpInto(writer: BundleWriter, progress: Progress, ownerUrl: string, database: string, part: string): Promise<void> {
  await writer.beginPart(part);
  progress.begin(part);
  await pgDump(ownerUrl, database, async (bytes) => {
    progress.bytes(bytes.length);
    await writer.write(bytes);
  });
  const info = writer.endPart();
  progress.end(`sha256 ${info.sha256.slice(0, 16)}…`);
}

/** TLS_DIR's regular files (the internal CA's key and certificate, ACME account and certificates), and the bootstrap token file. */
async function backupState(config: AppConfig, writer: BundleWriter, progress: Progress): Promise<BackupManifest['state']> {
  const state: BackupManifest['state'] = [];
  const tlsDir = resolve(config.TLS_DIR);
  for await (const path of walk(tlsDir)) {
    const rel = relative(tlsDir, path).split(sep).join('/');
    const info = await lstat(path);
    const part = `state/tls/${rel}`;
    await writer.writePart(part, createReadStream(path));
    state.push({ part, kind: 'tls', path: rel, mode: info.mode & 0o777 });
  }
  const token = resolve(config.BOOTSTRAP_TOKEN_FILE);
  if (existsSync(token)) {
    await writer.writePart('state/bootstrap-token', createReadStream(token));
    state.push({ part: 'state/bootstrap-token', kind: 'bootstrap-token', path: 'bootstrap-token', mode: (await lstat(token)).mode & 0o777 });
  }
  progress.say(`state: ${state.length} file(s) from ${tlsDir}${state.some((s) => s.kind === 'bootstrap-token') ? ' and the bootstrap token' : ''}`);
  return state;
}

async function* walk(dir: string): AsyncIterable<string> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else if (entry.isFile()) yield path;
  }
}

/**
 * Every stored object's key, size and sha256 (a listing part, always), and with `--objects` the
 * objects themselves. Listed after the dumps: every object their rows name was written before.
 */
async function backupObjects(config: AppConfig, writer: BundleWriter, progress: Progress, include: boolean, scratch: string): Promise<BackupManifest['objects']> {
  const driver = createStorageDriver(config);
  const listingPath = join(scratch, 'listing.ndjson');
  const listing = await open(listingPath, 'w', 0o600);
  let count = 0;
  let bytes = 0;
  let vanished = 0;
  progress.begin(include ? 'objects' : 'objects (hashing, not included)');
  try {
    for await (const key of driver.list('')) {
      let stream;
      try {
        stream = await driver.get(key);
      } catch (error) {
        if (error instanceof StorageObjectNotFound) {
          vanished++; // deleted since it was listed (the sweep)
          continue;
        }
        throw error;
      }
      const hash = createHash('sha256');
      let objectSize = 0;
      if (include) await writer.beginPart(`objects/data/${key}`);
      for await (const piece of stream as AsyncIterable<Buffer>) {
        hash.update(piece);
        objectSize += piece.length;
        progress.bytes(piece.length);
        if (include) await writer.write(piece);
      }
      if (include) writer.endPart();
      await listing.write(`${JSON.stringify({ key, size: objectSize, sha256: hash.digest('hex') })}\n`);
      count++;
      bytes += objectSize;
    }
  } finally {
    await listing.close();
  }
  progress.end(`${count} object(s)${vanished ? `, ${vanished} deleted while listed` : ''}`);
  const part = 'objects/listing.ndjson';
  await writer.writePart(part, createReadStream(listingPath));
  return { driver: driver.kind, included: include, count, bytes, listing: part, vanished };
}
