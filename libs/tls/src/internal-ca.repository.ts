import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { subjectAltName } from './certificate';

const run = promisify(execFile);

export const CA_VALIDITY_DAYS = 3650;
export const LEAF_VALIDITY_DAYS = 365;

export interface CaFiles {
  certFile: string;
  keyFile: string;
}

/**
 * A certificate authority of this installation, for local and air-gapped installs: clients
 * trust its certificate (ca.crt) once and every leaf it signs. Node's crypto cannot sign X.509
 * certificates, so the openssl command line (in every Debian-based image) does it; arguments
 * go to execFile, never through a shell. Keys are EC P-256, files are written mode 0600 into a
 * 0700 directory and moved into place by rename, so a reader never sees half a file.
 */
export class InternalCaRepository {
  constructor(
    private readonly dir: string,
    private readonly openssl = 'openssl',
  ) {}

  get ca(): CaFiles {
    return { certFile: join(this.dir, 'ca.crt'), keyFile: join(this.dir, 'ca.key') };
  }

  /** Creates the CA unless it exists. Returns true when it was created. */
  async ensureCa(commonName = 'Coffer internal CA'): Promise<boolean> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    if (await exists(this.ca.certFile) && await exists(this.ca.keyFile)) return false;
    await this.inTemp(async (tmp) => {
      const config = join(tmp, 'ca.cnf');
      await writeFile(
        config,
        [
          '[req]',
          'distinguished_name = dn',
          'x509_extensions = ca',
          'prompt = no',
          '[dn]',
          `CN = ${commonName} ${randomBytes(4).toString('hex')}`,
          '[ca]',
          'basicConstraints = critical, CA:TRUE, pathlen:0',
          'keyUsage = critical, keyCertSign, cRLSign',
          'subjectKeyIdentifier = hash',
          '',
        ].join('\n'),
      );
      await this.openssl_(['req', '-x509', '-new', '-config', config, ...ecKey(join(tmp, 'ca.key')), '-days', String(CA_VALIDITY_DAYS),
        '-set_serial', serial(), '-out', join(tmp, 'ca.crt')]);
      await place(join(tmp, 'ca.key'), this.ca.keyFile);
      await place(join(tmp, 'ca.crt'), this.ca.certFile);
    });
    return true;
  }

  /** Issues a server certificate for `names`, signed by this CA, to certFile/keyFile. */
  async issueLeaf(names: string[], target: CaFiles, validityDays = LEAF_VALIDITY_DAYS): Promise<void> {
    await this.inTemp(async (tmp) => {
      const config = join(tmp, 'leaf.cnf');
      await writeFile(
        config,
        [
          '[req]',
          'distinguished_name = dn',
          'prompt = no',
          '[dn]',
          `CN = ${names[0]}`,
          '[leaf]',
          'basicConstraints = critical, CA:FALSE',
          'keyUsage = critical, digitalSignature',
          'extendedKeyUsage = serverAuth',
          `subjectAltName = ${subjectAltName(names)}`,
          'subjectKeyIdentifier = hash',
          'authorityKeyIdentifier = keyid',
          '',
        ].join('\n'),
      );
      const csr = join(tmp, 'leaf.csr');
      await this.openssl_(['req', '-new', '-config', config, ...ecKey(join(tmp, 'leaf.key')), '-out', csr]);
      await this.openssl_(['x509', '-req', '-in', csr, '-CA', this.ca.certFile, '-CAkey', this.ca.keyFile, '-set_serial', serial(),
        '-days', String(validityDays), '-extfile', config, '-extensions', 'leaf', '-out', join(tmp, 'leaf.crt')]);
      // Key first: a poller that sees the new certificate with the old key rejects the pair and
      // retries; the other order would be the same, but this keeps the window to one rename.
      await place(join(tmp, 'leaf.key'), target.keyFile);
      await place(join(tmp, 'leaf.crt'), target.certFile);
    });
  }

  private async openssl_(args: string[]): Promise<void> {
    try {
      await run(this.openssl, args, { timeout: 30_000 });
    } catch (error) {
      const e = error as { stderr?: string; message?: string };
      throw new Error(`openssl ${args[0]} failed: ${(e.stderr || e.message || '').trim()}`);
    }
  }

  private async inTemp<T>(work: (dir: string) => Promise<T>): Promise<T> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = await mkdtemp(join(this.dir, '.tmp-'));
    try {
      return await work(tmp);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
}

const ecKey = (keyFile: string) => ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile];

/** 16 random bytes with the top bit clear: positive, unique, unguessable (CA/B BR 7.1). */
const serial = () => {
  const bytes = randomBytes(16);
  bytes[0] &= 0x7f;
  return `0x${bytes.toString('hex')}`;
};

/** Keys 0600; certificates are public (0644), so that clients on the machine can read ca.crt. */
async function place(from: string, to: string): Promise<void> {
  await chmod(from, from.endsWith('.key') ? 0o600 : 0o644);
  await rename(from, to);
}

async function exists(path: string): Promise<boolean> {
  return readFile(path).then(
    () => true,
    () => false,
  );
}

