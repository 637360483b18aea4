import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import * as acme from 'acme-client';
import type { ChallengeStore } from './challenge-store';
import type { CertificatePair } from './tls-options';

export interface AcmeOptions {
  directoryUrl: string;
  email?: string;
  /** The account key is kept, so renewals use the same account (and its rate limits). */
  accountKeyFile: string;
  /**
   * acme-client first fetches the challenge itself through public DNS and port 80, so a
   * misconfiguration costs no failed validation at the CA (Let's Encrypt limits those).
   * Off only where that cannot work: offline tests against pebble.
   */
  selfCheck: boolean;
}

/** Orders certificates over ACME (RFC 8555) with HTTP-01, through acme-client. */
export class AcmeRepository {
  constructor(
    private readonly options: AcmeOptions,
    private readonly challenges: ChallengeStore,
  ) {}

  /** A certificate for `names` (the first is the subject); `cert` is the chain, leaf first. */
  async order(names: string[]): Promise<CertificatePair> {
    const client = new acme.Client({ directoryUrl: this.options.directoryUrl, accountKey: await this.accountKey() });
    const key = await acme.crypto.createPrivateEcdsaKey('P-256');
    const [, csr] = await acme.crypto.createCsr({ commonName: names[0], altNames: names }, key);
    const cert = await client.auto({
      csr,
      email: this.options.email,
      termsOfServiceAgreed: true,
      challengePriority: ['http-01'],
      skipChallengeVerification: !this.options.selfCheck,
      challengeCreateFn: async (_authz, challenge, keyAuthorization) => this.challenges.set(challenge.token, keyAuthorization),
      challengeRemoveFn: async (_authz, challenge) => this.challenges.delete(challenge.token),
    });
    return { cert, key: key.toString() };
  }

  private async accountKey(): Promise<Buffer> {
    const existing = await readFile(this.options.accountKeyFile).catch(() => undefined);
    if (existing) return existing;
    await mkdir(dirname(this.options.accountKeyFile), { recursive: true, mode: 0o700 });
    const key = await acme.crypto.createPrivateEcdsaKey('P-256');
    const tmp = `${this.options.accountKeyFile}.${process.pid}.tmp`;
    await writeFile(tmp, key, { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, this.options.accountKeyFile);
    return key;
  }
}
