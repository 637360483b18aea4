import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AppConfig } from '@coffer/config';
import { loadLocalMasterKey } from '@coffer/kms';
import type { PartInfo } from './bundle';

/** What a bundle holds, its last frame (docs/adr/0012-backup.md). */
export interface BackupManifest {
  format: 'coffer-backup-manifest';
  version: 1;
  /** Coffer's version that wrote it. */
  coffer: string;
  startedAt: string;
  finishedAt: string;
  installation: {
    controlDatabase: string;
    orgDatabasePrefix: string;
    roles: { owner: string; app: string };
    postgres: string;
    pgDump: string;
  };
  kms:
    | { provider: 'local'; masterKeyCheck: string; note: string }
    | { provider: 'vault'; address: string; mount: string; keyPrefix: string; note: string };
  /** The control plane first in this list, then each org's (in the bundle, the orgs' dumps come first). */
  databases: {
    role: 'control' | 'org';
    database: string;
    part: string;
    schemaVersion: number;
    org?: { id: string; slug: string; status: string };
  }[];
  /** Registered orgs whose database did not exist at backup time (a creation still under way). */
  orgsWithoutDatabase: { id: string; slug: string; status: string }[];
  /** Coffer's state directory: TLS_DIR's files (the internal CA's key), the bootstrap token if present. */
  state: { part: string; kind: 'tls' | 'bootstrap-token'; path: string; mode: number }[];
  objects: { driver: 'filesystem' | 's3'; included: boolean; count: number; bytes: number; listing: string; vanished: number };
  /** Every part before the manifest, in order. */
  parts: PartInfo[];
}

export const MASTER_KEY_CHECK_LABEL = 'coffer-backup master key check v1';

/** An HMAC of a fixed label under the local master key: tells whether two keys are the same, and nothing else. */
export function masterKeyCheck(config: AppConfig): string {
  const key = loadLocalMasterKey({ file: config.KMS_LOCAL_MASTER_KEY_FILE, base64: config.KMS_LOCAL_MASTER_KEY });
  try {
    return createHmac('sha256', key).update(MASTER_KEY_CHECK_LABEL).digest('hex');
  } finally {
    key.fill(0);
  }
}

export function cofferVersion(): string {
  for (const up of ['../../../../../package.json', '../../../../package.json']) {
    try {
      return JSON.parse(readFileSync(join(__dirname, up), 'utf8')).version;
    } catch {
      // not at this depth (the source tree or dist)
    }
  }
  return 'unknown';
}

/** A part name under `objects/` or `state/tls/` never climbs out of where it is restored. */
export function safeRelative(path: string): boolean {
  return path.length > 0 && !path.startsWith('/') && path.split('/').every((p) => p !== '' && p !== '.' && p !== '..');
}

/** Sanity of an authenticated manifest (written by this code, so a mismatch means another version). */
export function assertManifest(value: unknown): asserts value is BackupManifest {
  const m = value as BackupManifest;
  if (m?.format !== 'coffer-backup-manifest' || m.version !== 1 || !Array.isArray(m.parts) || !Array.isArray(m.databases) || !Array.isArray(m.state)) {
    throw new Error('unknown manifest format');
  }
}
