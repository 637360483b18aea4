import { createHash, Hash, randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { AppConfig } from '@coffer/config';
import { databaseOf, ensureDatabase, ownerUrlOf, quoteIdent, roleOf, withClient, withDatabase } from '@coffer/database';
import { assertLocalMasterKeyOpensStore } from '@coffer/kms';
import { createStorageDriver, StorageDriver, StorageObjectNotFound } from '@coffer/storage';
import { CommandRefused } from '../usage-error';
import { backupSecret, readBundle } from './bundle';
import { assertManifest, BackupManifest, masterKeyCheck, safeRelative } from './manifest';
import { pgRestore, toolMajor } from './pg-tools';
import { Progress, size } from './progress';

export interface RestoreOptions {
  file: string;
  /** Replace an installation that is not empty (its databases are dropped). */
  force: boolean;
  keyFile?: string;
  progress?: Progress;
}

export interface RestoreSummary {
  file: string;
  backupTakenAt: string;
  databases: { database: string; role: 'control' | 'org'; slug?: string }[];
  replacedDatabases: string[];
  stateFiles: number;
  objects: { included: boolean; restored: number; checked: number; missing: string[]; mismatched: string[] };
  next: string;
}

/**
 * `coffer restore <file>` (docs/adr/0012-backup.md): reads the whole bundle once to check every
 * chunk's tag and every part's sha256 against the manifest, and the installation's roles and KMS
 * against the backup's, before changing anything; refuses a non-empty installation without
 * `--force`; then recreates the control plane and the org databases (pg_restore, one
 * transaction each), writes the state files back, and restores the objects or checks the
 * listing against the object store.
 */
export async function restoreInstallation(config: AppConfig, options: RestoreOptions): Promise<{ summary: RestoreSummary; complete: boolean }> {
  const progress = options.progress ?? new Progress('restore');
  const file = resolve(options.file);
  if (!existsSync(file) || !statSync(file).isFile()) throw new CommandRefused(`no file ${file}`);
  const secret = await backupSecret(options.keyFile);
  try {
    const manifest = await verifyBundle(file, secret, progress);
    const ownerUrl = ownerUrlOf(config);
    const controlDatabase = databaseOf(ownerUrl);
    await checkTarget(config, manifest);
    const replaced = await clearTarget(config, manifest, options.force, progress);

    const driver = createStorageDriver(config);
    if (manifest.objects.included) await driver.ready();
    const result: RestoreSummary['objects'] = { included: manifest.objects.included, restored: 0, checked: 0, missing: [], mismatched: [] };
    const byPart = new Map(manifest.parts.map((p) => [p.name, p]));
    const databases = new Map(manifest.databases.map((d) => [d.part, d]));
    const states = new Map(manifest.state.map((s) => [s.part, s]));
    let current: { name: string; hash: Hash; size: number; sink: Sink } | undefined;

    const close = async () => {
      if (!current) return;
      const expected = byPart.get(current.name)!;
      if (current.hash.digest('hex') !== expected.sha256 || current.size !== expected.size) {
        throw new CommandRefused(`${current.name} changed since it was checked (the file was modified during the restore); the installation is partly restored`);
      }
      await current.sink.end();
      progress.end();
      current = undefined;
    };

    for await (const record of readBundle(file, secret)) {
      if (record.kind === 'part') {
        await close();
        const name = record.name;
        progress.begin(name);
        const database = databases.get(name);
        const state = states.get(name);
        let sink: Sink;
        if (database) {
          const target = database.role === 'control' ? controlDatabase : database.database;
          await withClient(withDatabase(ownerUrl, 'postgres'), (admin) => ensureDatabase(admin, target, roleOf(config.DATABASE_APP_URL)));
          sink = pgRestore(ownerUrl, target);
        } else if (state) {
          const path = state.kind === 'tls' ? join(resolve(config.TLS_DIR), ...state.path.split('/')) : resolve(config.BOOTSTRAP_TOKEN_FILE);
          sink = fileSink(path, state.mode);
        } else if (name.startsWith('objects/data/')) {
          sink = objectSink(driver, name.slice('objects/data/'.length), () => result.restored++);
        } else if (name === manifest.objects.listing && !manifest.objects.included) {
          sink = listingCheck(driver, result, progress);
        } else {
          sink = { write: async () => undefined, end: async () => undefined }; // the listing, when the objects were restored
        }
        current = { name, hash: createHash('sha256'), size: 0, sink };
      } else if (record.kind === 'data') {
        current!.hash.update(record.bytes);
        current!.size += record.bytes.length;
        progress.bytes(record.bytes.length);
        await current!.sink.write(record.bytes);
      } else {
        await close();
      }
    }

    // The restored keys open under this master key (the check the services make at start).
    await assertLocalMasterKeyOpensStore(config);
    const complete = result.missing.length === 0 && result.mismatched.length === 0;
    progress.say(`done in ${progress.elapsed()}${complete ? '' : `: ${result.missing.length} object(s) missing, ${result.mismatched.length} differing from the listing`}`);
    return {
      complete,
      summary: {
        file,
        backupTakenAt: manifest.startedAt,
        databases: manifest.databases.map((d) => ({ database: d.role === 'control' ? controlDatabase : d.database, role: d.role, ...(d.org && { slug: d.org.slug }) })),
        replacedDatabases: replaced,
        stateFiles: manifest.state.length,
        objects: { ...result, missing: result.missing.slice(0, 100), mismatched: result.mismatched.slice(0, 100) },
        next:
          manifest.kms.provider === 'vault'
            ? 'restore OpenBao/Vault (its data volume, unsealed) if not done, then start Coffer: `coffer migrate` runs first, then every chain can be checked (coffer audit:verify)'
            : 'start Coffer: `coffer migrate` runs first, then every chain can be checked (coffer audit:verify)',
      },
    };
  } finally {
    secret.fill(0);
  }
}

/** Pass one: every chunk opens, every part's bytes hash to the manifest's sha256, nothing is missing or extra. */
async function verifyBundle(file: string, secret: Buffer, progress: Progress): Promise<BackupManifest> {
  const refused = (what: string) => new CommandRefused(`the bundle ${file} does not match its manifest (${what}); nothing was changed`);
  const seen: { name: string; size: number; sha256: string }[] = [];
  let current: { name: string; size: number; hash: Hash } | undefined;
  let manifest: unknown;
  const total = statSync(file).size;
  progress.begin(`checking ${file} (${size(total)})`);
  for await (const record of readBundle(file, secret, (n) => progress.bytes(n))) {
    if (record.kind !== 'data' && current) seen.push({ name: current.name, size: current.size, sha256: current.hash.digest('hex') });
    if (record.kind === 'part') current = { name: record.name, size: 0, hash: createHash('sha256') };
    else if (record.kind === 'data') {
      current!.size += record.bytes.length;
      current!.hash.update(record.bytes);
    } else manifest = record.manifest;
  }
  try {
    assertManifest(manifest);
  } catch (error) {
    throw refused((error as Error).message);
  }
  if (manifest.parts.length !== seen.length) throw refused(`${seen.length} parts, the manifest lists ${manifest.parts.length}`);
  manifest.parts.forEach((expected, i) => {
    const got = seen[i];
    if (got.name !== expected.name || got.size !== expected.size || got.sha256 !== expected.sha256) throw refused(`part ${expected.name}`);
    const rest = got.name.startsWith('state/tls/') ? got.name.slice('state/tls/'.length) : got.name.startsWith('objects/data/') ? got.name.slice('objects/data/'.length) : 'ok';
    if (!safeRelative(rest)) throw refused(`part name ${got.name}`);
  });
  progress.end(`${seen.length} parts, every sha256 as in the manifest; taken ${manifest.startedAt} by Coffer ${manifest.coffer}`);
  return manifest;
}

/** The installation can take this bundle: the same roles, the same KMS, tools that read the dumps. */
async function checkTarget(config: AppConfig, manifest: BackupManifest): Promise<void> {
  const roles = { owner: roleOf(ownerUrlOf(config)), app: roleOf(config.DATABASE_APP_URL) };
  if (roles.owner !== manifest.installation.roles.owner || roles.app !== manifest.installation.roles.app) {
    throw new CommandRefused(
      `the backup was taken with the roles ${manifest.installation.roles.owner} (owner) and ${manifest.installation.roles.app} (app); ` +
        `this installation's are ${roles.owner} and ${roles.app}: create and configure roles of the backup's names; nothing was changed`,
    );
  }
  if (manifest.kms.provider !== config.KMS_PROVIDER) {
    throw new CommandRefused(`the backup's KMS is ${manifest.kms.provider}, this installation's KMS_PROVIDER is ${config.KMS_PROVIDER}; nothing was changed`);
  }
  if (manifest.kms.provider === 'local' && masterKeyCheck(config) !== manifest.kms.masterKeyCheck) {
    throw new CommandRefused('the configured local KMS master key is not the one this backup was taken with (its keys would not open); configure that master key; nothing was changed');
  }
  const restore = toolMajor('pg_restore');
  const dumpMajor = Number(manifest.installation.pgDump.split('.')[0]);
  if (restore.major < dumpMajor) throw new CommandRefused(`pg_restore ${restore.version} cannot read dumps of pg_dump ${manifest.installation.pgDump}: install the client tools of version ${dumpMajor} or newer`);
}

/**
 * An installation with a control plane, an org database (the bundle's, or any under the prefix)
 * or, when the bundle holds objects, any stored object, is not empty: refused unless `force`,
 * which drops those databases (Coffer's processes must be stopped: their connections block it).
 */
async function clearTarget(config: AppConfig, manifest: BackupManifest, force: boolean, progress: Progress): Promise<string[]> {
  const ownerUrl = ownerUrlOf(config);
  const names = [databaseOf(ownerUrl), ...manifest.databases.filter((d) => d.role === 'org').map((d) => d.database)];
  const found = await withClient(withDatabase(ownerUrl, 'postgres'), async (admin) => {
    const { rows } = await admin.query<{ datname: string }>(
      'SELECT datname FROM pg_database WHERE datname = ANY($1) OR starts_with(datname, $2) ORDER BY datname',
      [names, config.ORG_DATABASE_PREFIX],
    );
    return rows.map((r) => r.datname);
  });
  let objects = false;
  if (manifest.objects.included) {
    for await (const _ of createStorageDriver(config).list('')) {
      objects = true;
      break;
    }
  }
  if (!found.length && !objects) return [];
  const what = [...(found.length ? [`database(s) ${found.join(', ')}`] : []), ...(objects ? ['objects in the object store'] : [])].join(' and ');
  if (!force) throw new CommandRefused(`this installation is not empty (${what}): restore into an empty one, or give --force to replace it; nothing was changed`);
  await withClient(withDatabase(ownerUrl, 'postgres'), async (admin) => {
    for (const name of found) {
      progress.say(`--force: dropping database ${name}`);
      try {
        await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
      } catch (error) {
        throw new CommandRefused(`cannot drop database ${name} (${(error as Error).message}): stop Coffer's API, worker and provisioner first`);
      }
    }
  });
  if (objects) progress.say('--force: objects of the bundle overwrite those stored; others are left in place');
  return found;
}

interface Sink {
  write(bytes: Buffer): Promise<void>;
  end(): Promise<void>;
}

/** A state file: written beside its place, then renamed over it, with its recorded mode. */
function fileSink(path: string, mode: number): Sink {
  const parts: Buffer[] = [];
  return {
    async write(bytes) {
      parts.push(bytes);
    },
    async end() {
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      const temp = `${path}.${randomBytes(4).toString('hex')}.partial`;
      await writeFile(temp, Buffer.concat(parts), { mode: mode & 0o777 || 0o600 });
      await chmod(temp, mode & 0o777 || 0o600);
      await rename(temp, path);
    },
  };
}

/** An object: its bytes gathered (a chunk object, a few MiB at most), then one PUT. */
function objectSink(driver: StorageDriver, key: string, done: () => void): Sink {
  const parts: Buffer[] = [];
  return {
    async write(bytes) {
      parts.push(bytes);
    },
    async end() {
      await driver.put(key, Buffer.concat(parts));
      done();
    },
  };
}

/** Without the objects in the bundle: each listed object must be in the store, with the listed sha256. */
function listingCheck(driver: StorageDriver, result: RestoreSummary['objects'], progress: Progress): Sink {
  let rest = '';
  const check = async (line: string) => {
    if (!line) return;
    const { key, sha256 } = JSON.parse(line) as { key: string; size: number; sha256: string };
    result.checked++;
    try {
      const hash = createHash('sha256');
      for await (const piece of (await driver.get(key)) as AsyncIterable<Buffer>) hash.update(piece);
      if (hash.digest('hex') !== sha256) result.mismatched.push(key);
    } catch (error) {
      if (!(error instanceof StorageObjectNotFound)) throw error;
      result.missing.push(key);
    }
  };
  return {
    async write(bytes) {
      const lines = (rest + bytes.toString('utf8')).split('\n');
      rest = lines.pop()!;
      for (const line of lines) await check(line);
    },
    async end() {
      await check(rest);
      progress.say(`objects: ${result.checked} listed, ${result.missing.length} missing, ${result.mismatched.length} differing from the listing`);
    },
  };
}
