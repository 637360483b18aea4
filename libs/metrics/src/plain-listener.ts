import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { DatabaseService } from '@coffer/database';
import type { JobsService } from '@coffer/jobs';
import type { Logger } from '@coffer/logging';

/** What a dependency's probe says: a health answer names what is down, never why. */
export type Probe = 'ok' | 'down';

/** `check` answering within 2 s: `ok`, else `down`. */
export function probe(check: () => Promise<unknown>): Promise<Probe> {
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), 2000).unref());
  return Promise.race([check(), timeout]).then(
    () => 'ok' as const,
    () => 'down' as const,
  );
}

/** PostgreSQL (the control plane) and Redis: what every Coffer process's health checks first. */
export async function coreProbes(db: DatabaseService, jobs: JobsService): Promise<{ postgres: Probe; redis: Probe }> {
  const [postgres, redis] = await Promise.all([probe(() => db.control.query('SELECT 1')), probe(() => jobs.redis.ping())]);
  return { postgres, redis };
}

export interface PlainAnswer {
  status: number;
  type: string;
  body: string;
}

/**
 * A plain-HTTP listener of a few `GET` routes (metrics, health) beside the API's own port: never
 * published, so scraping needs no credential. Anything else is 404; a route that fails is 500,
 * logged as `what` failed.
 */
export class PlainListener {
  private server?: Server;

  constructor(
    private readonly what: string,
    private readonly logger: Logger,
    private readonly routes: Readonly<Record<string, () => Promise<PlainAnswer>>>,
  ) {}

  get port(): number | undefined {
    return (this.server?.address() as AddressInfo | null)?.port;
  }

  async listen(host: string, port: number): Promise<void> {
    const server = createServer((request, response) => {
      const route = request.method === 'GET' ? this.routes[request.url ?? ''] : undefined;
      if (!route) {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      route().then(
        ({ status, type, body }) => response.writeHead(status, { 'content-type': type }).end(body),
        (error: Error) => {
          this.logger.error({ err: error.message }, `${this.what} failed`);
          response.writeHead(500, { 'content-type': 'text/plain' }).end('failed\n');
        },
      );
    });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
    this.server = server;
    this.logger.info({ host, port: this.port }, `${this.what} listening`);
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
