import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CertificateInfo, coversNames, inspectPair, renewalDue } from './certificate';
import type { CertificatesRepository } from './certificates.repository';
import { CaFiles, InternalCaRepository } from './internal-ca.repository';
import type { CertificatePair } from './tls-options';

export const CERTIFICATE_SOURCE = Symbol('CERTIFICATE_SOURCE');

/**
 * Where the served certificate comes from: a file pair on disk (internal CA, customer files),
 * re-read at every check, or the control-plane database (ACME), shared by every replica.
 */
export interface CertificateSource {
  readonly kind: string;
  /** The pair to serve now (read after every refresh). */
  pair(): Promise<CertificatePair>;
  /**
   * Issues or renews the pair when it is missing or due; a no-op for customer-supplied files.
   * `start` is the call before the server listens (no ACME challenge can be answered yet).
   */
  refresh(phase: 'start' | 'check', now?: Date): Promise<void>;
  /** What clients should trust, when it is ours to report (the internal CA's certificate). */
  readonly caCertFile?: string;
}

export async function readPair(files: CaFiles): Promise<CertificatePair> {
  const [cert, key] = await Promise.all([readFile(files.certFile, 'utf8'), readFile(files.keyFile, 'utf8')]);
  return { cert, key };
}

/** TLS_CERT_FILE / TLS_KEY_FILE, supplied and renewed by the customer. */
export class StaticFilesSource implements CertificateSource {
  readonly kind = 'files';
  constructor(readonly files: CaFiles) {}
  async refresh(): Promise<void> {}
  pair(): Promise<CertificatePair> {
    return readPair(this.files);
  }
}

/** A leaf signed by the installation's own CA, re-issued when the names change or renewal is due. */
export class InternalCaSource implements CertificateSource {
  readonly kind = 'internal-ca';
  readonly files: CaFiles;
  private readonly repository: InternalCaRepository;

  constructor(
    dir: string,
    private readonly names: string[],
    private readonly onIssued: (event: { created: 'ca' | 'leaf'; path: string }) => void = () => undefined,
  ) {
    this.repository = new InternalCaRepository(dir);
    this.files = { certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key') };
  }

  get caCertFile(): string {
    return this.repository.ca.certFile;
  }

  pair(): Promise<CertificatePair> {
    return readPair(this.files);
  }

  async refresh(_phase: 'start' | 'check' = 'check', now = new Date()): Promise<void> {
    const newCa = await this.repository.ensureCa();
    if (newCa) this.onIssued({ created: 'ca', path: this.repository.ca.certFile });
    const pair = await readPair(this.files).catch(() => undefined);
    const signed = pair && (await this.signedByCa(pair.cert).catch(() => false));
    const current: CertificateInfo | undefined = signed ? tryInspect(pair) : undefined;
    if (current && coversNames(current, this.names) && renewalDue(current) > now) return;
    await this.repository.issueLeaf(this.names, this.files);
    this.onIssued({ created: 'leaf', path: this.files.certFile });
  }

  /** A leaf of a replaced CA (another replica won the first start) would not verify for clients. */
  private async signedByCa(cert: string): Promise<boolean> {
    const ca = new X509Certificate(await readFile(this.repository.ca.certFile));
    return new X509Certificate(cert).verify(ca.publicKey);
  }
}

function tryInspect(pair: CertificatePair): CertificateInfo | undefined {
  try {
    return inspectPair(pair);
  } catch {
    return undefined;
  }
}

/**
 * A certificate from an ACME CA (Let's Encrypt), which the worker orders and renews into the
 * control-plane database (CertificateRenewalService). Every replica re-reads the row at each
 * check and opens the private key only when the serial changed. Until the first certificate
 * is there, the internal CA's is served so that HTTPS answers at all.
 */
export class StoredAcmeSource implements CertificateSource {
  readonly kind = 'acme';
  private loaded?: CertificatePair & { serial: string };
  private usingFallback = true;

  constructor(
    readonly certificateId: string,
    private readonly names: string[],
    private readonly certificates: CertificatesRepository,
    private readonly fallback: CertificateSource,
    private readonly onOpenFailed: (error: unknown) => void = () => undefined,
  ) {}

  get caCertFile(): string | undefined {
    return this.usingFallback ? this.fallback.caCertFile : undefined;
  }

  async pair(): Promise<CertificatePair> {
    return this.usingFallback || !this.loaded ? this.fallback.pair() : this.loaded;
  }

  async refresh(phase: 'start' | 'check', now = new Date()): Promise<void> {
    const stored = await this.certificates.get(this.certificateId);
    const usable = stored?.serial && stored.notAfter && stored.notAfter > now && coversNames({ names: stored.domains }, this.names);
    if (usable) {
      // The KMS down (ADR 0007) must not stop HTTPS: keep what is served and try at the next check.
      if (this.loaded?.serial !== stored.serial) {
        const opened = await this.certificates.pair(this.certificateId).catch((error: unknown) => void this.onOpenFailed(error));
        this.loaded = opened ?? this.loaded;
      }
      this.usingFallback = !this.loaded;
    } else {
      this.usingFallback = true;
    }
    if (this.usingFallback) await this.fallback.refresh(phase, now);
  }
}
