import { X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { AcmeRepository } from './acme.repository';
import { CertificateInfo, coversNames, inspectPair, renewalAlert, renewalDue } from './certificate';
import { CaFiles, InternalCaRepository } from './internal-ca.repository';
import type { CertificatePair } from './tls-options';

export const CERTIFICATE_SOURCE = Symbol('CERTIFICATE_SOURCE');

/**
 * Every source ends in a certificate and key file pair on disk, which the CertificateService
 * re-reads: replacing the files is how a new certificate reaches the server (and every replica
 * sharing the directory), whoever wrote them.
 */
export interface CertificateSource {
  readonly kind: string;
  /** The pair to serve now (read after every refresh). */
  readonly files: CaFiles;
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

/** Writes key then certificate, each by rename, so a reader never sees half a file. */
export async function writePair(files: CaFiles, pair: CertificatePair): Promise<void> {
  for (const [path, content, mode] of [[files.keyFile, pair.key, 0o600], [files.certFile, pair.cert, 0o644]] as const) {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, content, { mode });
    await chmod(tmp, mode);
    await rename(tmp, path);
  }
}

/**
 * A certificate from an ACME CA (Let's Encrypt), renewed when due. Until the first one is
 * issued, the internal CA's certificate is served so that HTTPS answers at all; the order
 * waits for the first check, when the plain-HTTP port can answer the challenge. Failed orders
 * back off exponentially (the CA rate-limits failures), and once the alert time of the served
 * certificate has passed every failure is logged as an error.
 */
export class AcmeSource implements CertificateSource {
  readonly kind = 'acme';
  private readonly acmeFiles: CaFiles;
  private usingFallback = false;
  private failures = 0;
  private nextAttempt = 0;

  constructor(
    dir: string,
    private readonly names: string[],
    private readonly acme: AcmeRepository,
    private readonly fallback: CertificateSource,
    private readonly retryMs: number,
    private readonly logger: Logger,
    private readonly lock: (work: () => Promise<void>) => Promise<boolean> = async (work) => (await work(), true),
  ) {
    this.acmeFiles = { certFile: join(dir, 'acme', 'cert.pem'), keyFile: join(dir, 'acme', 'key.pem') };
  }

  get files(): CaFiles {
    return this.usingFallback ? this.fallback.files : this.acmeFiles;
  }

  get caCertFile(): string | undefined {
    return this.usingFallback ? this.fallback.caCertFile : undefined;
  }

  async refresh(phase: 'start' | 'check', now = new Date()): Promise<void> {
    const current = await readPair(this.acmeFiles).then(inspectPair, () => undefined);
    const usable = current && coversNames(current, this.names) && current.notAfter > now;
    if (usable && renewalDue(current) > now) {
      this.usingFallback = false;
      return;
    }
    if (!usable && (phase === 'start' || this.usingFallback)) {
      await this.fallback.refresh(phase, now);
      this.usingFallback = true;
    }
    if (phase === 'start' || now.getTime() < this.nextAttempt) return;
    try {
      // Another replica ordering: wait for the next check (which sees its files if TLS_DIR is shared).
      const ordered = await this.lock(async () => {
        // Re-read under the lock: the replica that held it may just have written a certificate.
        const fresh = await readPair(this.acmeFiles).then(inspectPair, () => undefined);
        if (fresh && fresh.serial !== current?.serial && coversNames(fresh, this.names) && renewalDue(fresh) > now) return;
        await writePair(this.acmeFiles, await this.acme.order(this.names));
        this.logger.info({ names: this.names, renewal: Boolean(current) }, 'certificate issued by ACME');
      });
      if (!ordered) return;
      this.failures = 0;
      this.nextAttempt = 0;
      this.usingFallback = false;
    } catch (error) {
      this.failures += 1;
      this.nextAttempt = now.getTime() + Math.min(this.retryMs * 2 ** this.failures, 6 * 3_600_000);
      const fields = {
        names: this.names,
        failures: this.failures,
        notAfter: current?.notAfter.toISOString(),
        retryAt: new Date(this.nextAttempt).toISOString(),
        err: { message: (error as Error).message },
      };
      if (!usable) this.logger.error(fields, 'ACME order failing; serving the internal CA certificate meanwhile');
      else if (renewalAlert(current) <= now) this.logger.error(fields, 'certificate renewal failing; the certificate expires soon');
      else this.logger.warn(fields, 'certificate renewal failed; will retry');
    }
  }
}
