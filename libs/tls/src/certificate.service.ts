import type { Server as TlsServer } from 'node:tls';
import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { LOGGER, Logger } from '@coffer/logging';
import { CertificateInfo, inspectPair } from './certificate';
import { CERTIFICATE_SOURCE, CertificateSource } from './certificate-source';
import { secureContextOptions } from './tls-options';

/**
 * Serves the source's certificate and keeps serving the newest one: every TLS_RELOAD_INTERVAL_MS
 * it lets the source refresh (re-issue an internal-CA leaf, re-read files or the database row)
 * and, when the pair changed and is valid, swaps the server's secure context. setSecureContext() applies to the next handshake;
 * open connections keep theirs. A bad or half-written pair is logged and the old one kept.
 */
@Injectable()
export class CertificateService implements OnApplicationBootstrap, OnApplicationShutdown {
  private served?: { cert: string; key: string; info: CertificateInfo };
  private timer?: NodeJS.Timeout;
  private checking?: Promise<void>;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(CERTIFICATE_SOURCE) readonly source: CertificateSource,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  /** The certificate being served. */
  get current(): CertificateInfo | undefined {
    return this.served?.info;
  }

  async onApplicationBootstrap(): Promise<void> {
    // Without a certificate the server would accept connections and fail every handshake: stop.
    await this.load('start');
    if (this.source.caCertFile) {
      this.logger.info({ path: this.source.caCertFile }, 'internal CA certificate; clients trust this file');
    }
    this.timer = setInterval(() => void this.check(), this.config.TLS_RELOAD_INTERVAL_MS);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
  }

  /** One renewal-and-reload round; concurrent calls share it. Never throws. */
  check(): Promise<void> {
    this.checking ??= this.load('check')
      .catch((error) => this.logger.warn({ err: { message: (error as Error).message }, source: this.source.kind }, 'certificate check failed; serving the previous certificate'))
      .finally(() => (this.checking = undefined));
    return this.checking;
  }

  private async load(phase: 'start' | 'check'): Promise<void> {
    await this.source.refresh(phase);
    const pair = await this.source.pair();
    if (this.served && this.served.cert === pair.cert && this.served.key === pair.key) return;
    const info = inspectPair(pair);
    this.server().setSecureContext(secureContextOptions(pair));
    const previous = this.served?.info.serial;
    this.served = { ...pair, info };
    this.logger.info(
      { source: this.source.kind, serial: info.serial, notAfter: info.notAfter.toISOString(), names: info.names, previous },
      previous ? 'certificate reloaded' : 'certificate loaded',
    );
  }

  private server(): TlsServer {
    const server = this.adapterHost.httpAdapter.getHttpServer() as TlsServer;
    if (typeof server?.setSecureContext !== 'function') throw new Error('the API server is not an HTTPS server; TLS_MODE needs createApi to enable https');
    return server;
  }
}
