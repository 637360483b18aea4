import { once } from 'node:events';
import { open, rename, rm } from 'node:fs/promises';
import type { INestApplicationContext } from '@nestjs/common';
import { UsageError } from './usage-error';
import {
  AuditAnchor,
  AuditAnchorStore,
  AuditChain,
  AuditRepository,
  AuditService,
  canonicalJson,
  EXPORT_KEYS_FORMAT,
  parseSignature,
  publicEntry,
} from '@coffer/audit';

/** Entries read per query, as the REST NDJSON export reads them. */
const EXPORT_PAGE = 500;
/** Written out once this much is buffered: memory stays at a page of entries and a chunk. */
const CHUNK_BYTES = 256 * 1024;

export interface ExportSummary {
  chain: string;
  entries: number;
  /** The lowest and highest sequence numbers written (null when nothing was). */
  firstSeq: number | null;
  lastSeq: number | null;
  /** The checkpoint appended (the newest at or before lastSeq), if any. */
  checkpoint: number | null;
  publicKeys: number;
  output: string;
  note?: string;
}

/** Where the lines go: appended in order, awaited (backpressure), closed once. */
export interface ExportSink {
  /** The file, or `stdout`. */
  name: string;
  write(text: string): Promise<void>;
  done(): Promise<void>;
  failed(): Promise<void>;
}

/**
 * The chain's entries as the REST NDJSON export writes them (publicEntry, one a line, newest
 * first), read a page at a time from the chain's head as it was when the export began (entries
 * appended meanwhile are left for the next export), down to `since`. Then two lines of their
 * own, which `coffer audit:verify-offline` reads from the same file: the newest signed
 * checkpoint at or before the last entry written (an anchor, `coffer-audit-anchor/1`, from the
 * storage backend or else the database) and the chain's public keys (EXPORT_KEYS_FORMAT; pin
 * your own copy with `--keys` to rely on more than the file's consistency). An export that does
 * not start at entry 1 verifies only together with the earlier entries (files in one directory).
 */
export async function exportAuditChain(app: INestApplicationContext, chain: AuditChain, since: number, sink: ExportSink): Promise<ExportSummary> {
  try {
    const summary = await writeExport(app, chain, since, sink);
    await sink.done();
    return { ...summary, output: sink.name };
  } catch (error) {
    await sink.failed();
    throw error;
  }
}

async function writeExport(app: INestApplicationContext, chain: AuditChain, since: number, sink: ExportSink): Promise<Omit<ExportSummary, 'output'>> {
  const audit = app.get(AuditService);
  let buffered = '';
  const write = async (line: string) => {
    buffered += `${line}\n`;
    if (buffered.length >= CHUNK_BYTES) {
      const chunk = buffered;
      buffered = '';
      await sink.write(chunk);
    }
  };
  let entries = 0;
  let firstSeq: number | null = null;
  let lastSeq: number | null = null;
  let before: number | undefined;
  for (let more = true; more; ) {
    const page = await audit.list(chain, { before, limit: EXPORT_PAGE });
    for (const entry of page) {
      if (entry.seq < since) {
        more = false;
        break;
      }
      lastSeq ??= entry.seq;
      firstSeq = entry.seq;
      entries++;
      await write(JSON.stringify(publicEntry(entry)));
    }
    if (page.length < EXPORT_PAGE) more = false;
    before = page[page.length - 1]?.seq;
  }

  const checkpoint = lastSeq === null ? undefined : await newestCheckpoint(app, chain, lastSeq);
  if (checkpoint) await write(canonicalJson(checkpoint));
  const keys = checkpoint ? await audit.publicKeys(chain.id, { fresh: true }) : [];
  if (keys.length) await write(JSON.stringify({ format: EXPORT_KEYS_FORMAT, chain: chain.id, algorithm: 'ed25519', keys }));
  if (buffered) await sink.write(buffered);

  const summary: Omit<ExportSummary, 'output'> = { chain: chain.id, entries, firstSeq, lastSeq, checkpoint: checkpoint?.seq ?? null, publicKeys: keys.length };
  if (entries && !checkpoint) summary.note = 'no checkpoint is signed at or before the last entry: run audit:checkpoint, then export again, or audit:verify-offline finds nothing signed';
  else if (entries && firstSeq !== 1) summary.note = `starts at entry ${firstSeq}: audit:verify-offline checks it together with the earlier entries (every file in one directory)`;
  return summary;
}

/** The newest checkpoint at or before `seq`: the storage backend's anchor, else the database's row. */
async function newestCheckpoint(app: INestApplicationContext, chain: AuditChain, seq: number): Promise<AuditAnchor | undefined> {
  const stored = await app.get(AuditAnchorStore).latestAtOrBefore(chain.id, seq);
  const rows = (await app.get(AuditRepository).checkpoints(chain)).filter((c) => c.seq <= seq);
  const row = rows[rows.length - 1];
  if (!row || (stored && stored.seq >= row.seq)) return stored;
  return {
    format: 'coffer-audit-anchor/1',
    chain: chain.id,
    seq: row.seq,
    hash: row.hash.toString('hex'),
    signedAt: row.createdAt.toISOString(),
    keyName: row.keyName,
    keyVersion: parseSignature(row.signature)?.version ?? 0,
    signature: row.signature,
  };
}

/**
 * `--output <file>`: a file only its owner reads (0600), written beside the target and renamed
 * onto it when complete; else stdout. Opened before anything is read, so that a path that
 * cannot be written is refused (exit 64) before the export begins.
 */
export async function openExportSink(path: string | undefined): Promise<ExportSink> {
  if (path === undefined) return stdoutSink();
  const partial = `${path}.${process.pid}.partial`;
  const handle = await open(partial, 'wx', 0o600).catch((error: NodeJS.ErrnoException) => {
    throw new UsageError(`--output: cannot write beside ${path} (${error.code ?? error.message})`);
  });
  return {
    name: path,
    async write(text) {
      await handle.write(text);
    },
    async done() {
      await handle.sync();
      await handle.close();
      await rename(partial, path);
    },
    async failed() {
      await handle.close().catch(() => undefined);
      await rm(partial, { force: true });
    },
  };
}

function stdoutSink(): ExportSink {
  const out = process.stdout;
  return {
    name: 'stdout',
    async write(text) {
      if (!out.write(text)) await once(out, 'drain');
    },
    async done() {
      await new Promise<void>((resolve) => out.write('', () => resolve()));
    },
    async failed() {},
  };
}
