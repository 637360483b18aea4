import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CertificateInfo, coversNames, inspectPair, renewalDue } from './certificate';
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
  readonly files: CaFiles;
  /** Issues or renews the pair when it is missing or due; a no-op for customer-supplied files. */
  refresh(now?: Date): Promise<void>;
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

  async refresh(now = new Date()): Promise<void> {
    const newCa = await this.repository.ensureCa();
    if (newCa) this.onIssued({ created: 'ca', path: this.repository.ca.certFile });
    let current: CertificateInfo | undefined;
    if (!newCa) current = await readPair(this.files).then(inspectPair, () => undefined);
    if (current && coversNames(current, this.names) && renewalDue(current) > now) return;
    await this.repository.issueLeaf(this.names, this.files);
    this.onIssued({ created: 'leaf', path: this.files.certFile });
  }
}
