import { randomUUID } from 'node:crypto';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { isIP, Socket } from 'node:net';
import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { answerClientError, ErrorBody, ERROR_STATUS, REQUEST_ID_HEADER } from '@coffer/http';
import { LOGGER, Logger } from '@coffer/logging';
import { certificateNames } from './certificate';
import { CertificateService } from './certificate.service';
import { ChallengeStore } from './challenge-store';

const CHALLENGE_PATH = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/;

/**
 * The plain-HTTP port: answers ACME HTTP-01 challenges and sends everything else to HTTPS
 * (308 keeps the method and body), or refuses it with 403 https_required when redirects are off.
 * It never serves the API: a request that reached it may already have leaked its token, which
 * is also why the redirect is not a convenience to rely on. No HSTS here: browsers ignore it
 * over plain HTTP (RFC 6797 §8.1).
 */
@Injectable()
export class PlainHttpListener implements OnApplicationShutdown {
  private server?: Server;
  private readonly hosts: Set<string>;
  private readonly canonicalHost: string;
  private readonly httpsPort: number;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly challenges: ChallengeStore,
    private readonly certificates: CertificateService,
  ) {
    const names = certificateNames(config.TLS_DOMAINS, true);
    this.hosts = new Set(names);
    this.canonicalHost = names[0];
    this.httpsPort = config.HTTPS_PUBLIC_PORT ?? config.HTTPS_PORT;
  }

  async listen(host: string, port: number): Promise<string> {
    const server = createServer((request, response) => this.handle(request, response));
    // A request Node cannot parse gets Coffer's error shape here too, never Node's bare 400.
    server.on('clientError', (error: Error, socket: Socket) => answerClientError(error, socket, { logger: this.logger, responseHeaders: {} }));
    server.headersTimeout = 10_000;
    server.requestTimeout = 10_000;
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, () => resolve()));
    this.server = server;
    // Challenges can be answered from now on: an ACME source waiting for its first order goes now.
    void this.certificates.check();
    const address = server.address() as { port: number };
    return `http://${host}:${address.port}`;
  }

  async onApplicationShutdown(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    const requestId = randomUUID();
    response.setHeader(REQUEST_ID_HEADER, requestId);
    void this.respond(request, response, requestId).then((status) =>
      this.logger.debug({ requestId, method: request.method, status, listener: 'http' }, 'request'),
    );
  }

  private async respond(request: IncomingMessage, response: ServerResponse, requestId: string): Promise<number> {
    const path = (request.url ?? '/').split('?')[0];
    const challenge = CHALLENGE_PATH.exec(path);
    if (challenge && (request.method === 'GET' || request.method === 'HEAD')) {
      const keyAuthorization = await withTimeout(this.challenges.get(challenge[1]), 3000).catch(() => null);
      if (keyAuthorization === null) return sendError(response, 'service_unavailable', 'challenge store unavailable', requestId);
      if (keyAuthorization === undefined) return sendError(response, 'route_not_found', 'no such challenge', requestId);
      response.writeHead(200, { 'content-type': 'text/plain' }).end(keyAuthorization);
      return 200;
    }
    if (this.config.HTTP_REDIRECT_TO_HTTPS) {
      response.writeHead(308, { location: this.httpsUrl(request), 'content-length': '0' }).end();
      return 308;
    }
    return sendError(response, 'https_required', 'this API is only served over HTTPS', requestId);
  }

  /**
   * The same path on HTTPS. The Host header is the client's: it is only used when it names
   * this installation, so the redirect cannot be pointed at another site.
   */
  private httpsUrl(request: IncomingMessage): string {
    const hostHeader = (request.headers.host ?? '').toLowerCase();
    const hostname = hostHeader.startsWith('[') ? hostHeader.slice(1, hostHeader.indexOf(']')) : hostHeader.replace(/:\d+$/, '');
    const host = this.hosts.has(hostname) ? hostname : this.canonicalHost;
    const authority = (isIP(host) === 6 ? `[${host}]` : host) + (this.httpsPort === 443 ? '' : `:${this.httpsPort}`);
    const target = request.url?.startsWith('/') ? request.url : '/';
    return `https://${authority}${target}`;
  }
}

type ListenerError = 'route_not_found' | 'https_required' | 'service_unavailable';

function sendError(response: ServerResponse, code: ListenerError, message: string, requestId: string): number {
  const body: ErrorBody = { error: { code, message, requestId } };
  response.writeHead(ERROR_STATUS[code], { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body));
  return ERROR_STATUS[code];
}

/** The shared Redis connection waits through outages; a challenge fetch should not. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), ms).unref())]);
}
