import { createServer, IncomingMessage } from 'node:http';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';

/** One item of an envelope: its header (`type`, `length`...) and its payload, parsed if JSON. */
export interface EnvelopeItem {
  header: { type: string; length?: number; [key: string]: unknown };
  payload: unknown;
}

export interface ReceivedEnvelope {
  /** `<project>` of `POST /api/<project>/envelope/`. */
  project: string;
  header: Record<string, unknown>;
  items: EnvelopeItem[];
  /** The body as it arrived, decoded (content-encoding) but not parsed: what a search for secrets reads. */
  raw: string;
  /** The request's path, with its query (the SDK's `sentry_key`), and headers, as sent. */
  url: string;
  requestHeaders: IncomingMessage['headers'];
}

/** An `event` item's payload, as far as the tests read it. */
export interface SentryEvent {
  event_id: string;
  level?: string;
  release?: string;
  environment?: string;
  transaction?: string;
  tags?: Record<string, string>;
  exception?: { values: { type?: string; value?: string; stacktrace?: { frames?: { filename?: string; function?: string; lineno?: number }[] } }[] };
  [key: string]: unknown;
}

export interface SentryReceiver {
  /** A DSN naming this receiver: `http://public@127.0.0.1:<port>/1`. */
  dsn: string;
  envelopes: ReceivedEnvelope[];
  /** Every `event` item received so far. */
  events(): SentryEvent[];
  /** Waits until an event satisfies `match` (rejects after `timeoutMs`). */
  waitForEvent(match: (event: SentryEvent) => boolean, timeoutMs?: number): Promise<SentryEvent>;
  close(): Promise<void>;
}

/**
 * A local HTTP server standing for Sentry's (or GlitchTip's) ingestion endpoint, not Sentry
 * itself: it accepts envelopes on `POST /api/<project>/envelope/` and decodes them as the
 * envelope format says (develop.sentry.dev/sdk/envelopes): newline-separated, a JSON envelope
 * header, then per item a JSON item header and its payload, `length` bytes long when the item
 * header says so, else up to the next newline. Bodies in a content-encoding (gzip, deflate, br)
 * are decoded first. Anything else it answers 404.
 */
export async function startSentryReceiver(): Promise<SentryReceiver> {
  const envelopes: ReceivedEnvelope[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const route = /^\/api\/([^/]+)\/envelope\/?(\?.*)?$/.exec(request.url ?? '');
      if (request.method !== 'POST' || !route) return void response.writeHead(404).end();
      try {
        const body = decode(Buffer.concat(chunks), request.headers['content-encoding']);
        envelopes.push({ project: route[1], ...parseEnvelope(body), raw: body.toString('utf8'), url: request.url!, requestHeaders: request.headers });
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } catch (error) {
        response.writeHead(400).end(String(error));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const events = () =>
    envelopes.flatMap((e) => e.items.filter((item) => item.header.type === 'event').map((item) => item.payload as SentryEvent));
  return {
    dsn: `http://public@127.0.0.1:${port}/1`,
    envelopes,
    events,
    async waitForEvent(match, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = events().find(match);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no matching event in ${timeoutMs} ms; received: ${JSON.stringify(events())}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function decode(body: Buffer, encoding: string | undefined): Buffer {
  switch ((encoding ?? 'identity').trim().toLowerCase()) {
    case 'identity':
      return body;
    case 'gzip':
    case 'x-gzip':
      return gunzipSync(body);
    case 'deflate':
      return inflateSync(body);
    case 'br':
      return brotliDecompressSync(body);
    default:
      throw new Error(`unsupported content-encoding ${encoding}`);
  }
}

/** Splits an envelope into its header and items; throws on anything the format does not allow. */
export function parseEnvelope(body: Buffer): { header: Record<string, unknown>; items: EnvelopeItem[] } {
  let offset = 0;
  const line = (): Buffer => {
    const end = body.indexOf(0x0a, offset);
    const text = body.subarray(offset, end === -1 ? body.length : end);
    offset = end === -1 ? body.length : end + 1;
    return text;
  };
  const header = JSON.parse(line().toString('utf8'));
  const items: EnvelopeItem[] = [];
  while (offset < body.length) {
    const itemHeaderLine = line();
    if (itemHeaderLine.length === 0) continue; // a trailing newline
    const itemHeader = JSON.parse(itemHeaderLine.toString('utf8')) as EnvelopeItem['header'];
    if (typeof itemHeader.type !== 'string') throw new Error('item header without a type');
    let payload: Buffer;
    if (itemHeader.length !== undefined) {
      payload = body.subarray(offset, offset + itemHeader.length);
      if (payload.length !== itemHeader.length) throw new Error(`item ${itemHeader.type}: ${payload.length} of ${itemHeader.length} bytes`);
      offset += itemHeader.length;
      if (body[offset] === 0x0a) offset++;
    } else {
      payload = line();
    }
    // Every item type but attachments carries JSON.
    const text = payload.toString('utf8');
    items.push({ header: itemHeader, payload: itemHeader.type === 'attachment' ? text : JSON.parse(text) });
  }
  return { header, items };
}
