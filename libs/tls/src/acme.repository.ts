import * as acme from 'acme-client';
import type { EgressPolicy } from '@coffer/http';
import type { ChallengeStore } from './challenge-store';
import type { CertificatePair } from './tls-options';

export interface AcmeOptions {
  directoryUrl: string;
  email?: string;
  /**
   * acme-client first fetches the challenge itself through public DNS and port 80, so a
   * misconfiguration costs no failed validation at the CA (Let's Encrypt limits those).
   * Off only where that cannot work: offline tests against pebble.
   */
  selfCheck: boolean;
  /** Retries of one request on a network error, 429 or 5xx, within an order. */
  httpRetries: number;
}

/** Where the account key is kept (sealed, in the control-plane database): renewals use the same account. */
export interface AccountKeyStore {
  accountKey(directoryUrl: string): Promise<Buffer | undefined>;
  /** Stores the key unless one exists; returns the one stored. */
  saveAccountKey(directoryUrl: string, key: Buffer): Promise<Buffer>;
}

/** Orders certificates over ACME (RFC 8555) with HTTP-01, through acme-client. */
export class AcmeRepository {
  constructor(
    private readonly options: AcmeOptions,
    private readonly challenges: ChallengeStore,
    private readonly accounts: AccountKeyStore,
    private readonly egress: EgressPolicy,
  ) {
    // acme-client's one setting for this is on its shared HTTP client; one repository per process.
    (acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } }).acmeSettings.retryMaxAttempts = options.httpRetries;
    // So are its agents: every request to the CA, and the self-check of our own challenge.
    acme.axios.defaults.httpAgent = egress.httpAgent;
    acme.axios.defaults.httpsAgent = egress.httpsAgent;
  }

  /** A certificate for `names` (the first is the subject); `cert` is the chain, leaf first. */
  async order(names: string[]): Promise<CertificatePair> {
    // Refused here with its reason: acme-client would retry a refused request, then lose why.
    await this.egress.check(new URL(this.options.directoryUrl).hostname);
    try {
      return await this.orderOnce(names);
    } catch (error) {
      // acme-client 5.4 ends a request that got no response at all (connection refused, DNS,
      // TLS) with this TypeError once its retries are spent, the cause lost.
      if (error instanceof TypeError && /reading 'config'/.test(error.message)) {
        throw new Error(`the ACME server did not answer at ${this.options.directoryUrl} (unreachable, or its TLS certificate is not trusted)`);
      }
      throw error;
    }
  }

  private async orderOnce(names: string[]): Promise<CertificatePair> {
    const client = new acme.Client({ directoryUrl: this.options.directoryUrl, accountKey: await this.accountKey() });
    await this.account(client);
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

  /**
   * Finds the key's account (a POST-as-GET), or registers it. Left to auto(), an existing account
   * is "updated" with an empty change when no e-mail is set, which RFC 8555 servers may refuse
   * (pebble does); a CA that forgot the account (a test CA restarted) gets it registered again.
   */
  private async account(client: acme.Client): Promise<void> {
    try {
      await client.createAccount({ onlyReturnExisting: true });
    } catch (error) {
      // acme-client keeps only the problem's detail, whose wording differs between CAs: any refusal
      // (accountDoesNotExist) registers; no answer at all is acme-client's TypeError, passed on.
      if (error instanceof TypeError) throw error;
      await client.createAccount({ termsOfServiceAgreed: true, ...(this.options.email && { contact: [`mailto:${this.options.email}`] }) });
    }
  }

  private async accountKey(): Promise<Buffer> {
    const url = this.options.directoryUrl;
    return (await this.accounts.accountKey(url)) ?? this.accounts.saveAccountKey(url, await acme.crypto.createPrivateEcdsaKey('P-256'));
  }
}
