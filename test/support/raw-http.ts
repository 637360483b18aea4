import { createHash } from 'node:crypto';
import { request as httpRequest, IncomingHttpHeaders } from 'node:http';

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** False when the server cut the response short (fewer bytes than announced, or reset). */
  complete: boolean;
}

/**
 * A GET that keeps whatever bytes arrived even when the server aborts the response midway
 * (supertest and fetch throw them away): what a client saw before an integrity failure.
 */
export function rawGet(url: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers }, (res) => {
      const parts: Buffer[] = [];
      let settled = false;
      const done = () => {
        if (settled) return;
        settled = true;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts), complete: res.complete });
      };
      res.on('data', (part: Buffer) => parts.push(part));
      res.on('end', done);
      res.on('error', done);
      res.on('close', done);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A PUT of raw bytes: one body with Content-Length, or pieces sent chunked (no length). */
export function rawPut(url: string, headers: Record<string, string>, body: Buffer | Buffer[]): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const chunked = Array.isArray(body);
    const req = httpRequest(url, { method: 'PUT', headers: chunked ? headers : { ...headers, 'content-length': String(body.length) } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (part: Buffer) => parts.push(part));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString();
        resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
      });
    });
    req.on('error', reject);
    for (const piece of chunked ? body : [body]) req.write(piece);
    req.end();
  });
}

/** A PUT of `size` bytes: `block` over and over, streamed with backpressure (nothing held in memory). */
export function putRepeated(url: string, headers: Record<string, string>, size: number, block: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'PUT', headers: { ...headers, 'content-length': String(size) } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: text }));
    });
    req.on('error', reject);
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        const piece = block.subarray(0, Math.min(block.length, size - sent));
        sent += piece.length;
        if (!req.write(piece)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

/**
 * A GET streamed through SHA-256: its status, length and digest, nothing held in memory.
 * `digest: false` only counts the bytes (a benchmark's client should cost as little as can be).
 */
export function getDigest(
  url: string,
  headers: Record<string, string>,
  { digest = true } = {},
): Promise<{ status: number; size: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    httpRequest(url, { headers }, (res) => {
      const hash = createHash('sha256');
      let size = 0;
      res.on('data', (d: Buffer) => {
        if (digest) hash.update(d);
        size += d.length;
      });
      res.on('end', () => resolve({ status: res.statusCode!, size, sha256: hash.digest('hex') }));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}
