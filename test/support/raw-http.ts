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
