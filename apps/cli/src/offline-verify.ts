import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { AuditPublicKey, OfflineFile, OfflineResult, verifyOffline } from '@coffer/audit';
import { UsageError } from './usage-error';

/**
 * Reads a delivered log (a copy of the bucket's `<prefix><org>/`: entries/*.ndjson.gz and
 * digests/*.json, anchors too if given) or an exported NDJSON file, and verifies it with the
 * public keys alone. Nothing here opens a connection.
 */
export async function verifyOfflinePath(path: string, keysFile?: string): Promise<OfflineResult> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new UsageError(`no such file or directory: ${path}`);
  const files: OfflineFile[] = [];
  if (info.isDirectory()) {
    for await (const file of walk(path)) files.push({ name: relative(path, file).split(sep).join('/'), bytes: await readFile(file) });
  } else {
    files.push({ name: path.split(sep).join('/'), bytes: await readFile(path) });
  }
  let keys: AuditPublicKey[] | undefined;
  if (keysFile) {
    try {
      const parsed = JSON.parse(await readFile(keysFile, 'utf8'));
      keys = Array.isArray(parsed) ? parsed : parsed.keys;
      if (!Array.isArray(keys)) throw new Error('no keys');
    } catch {
      throw new UsageError(`--keys: ${keysFile} is not the JSON of GET /api/v1/audit/keys`);
    }
  }
  return verifyOffline(files, keys);
}

async function* walk(dir: string): AsyncIterable<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else if (entry.isFile()) yield path;
  }
}
