import NodeVault from 'node-vault';
import {
  DataKey,
  KmsHealth,
  KmsKeyInfo,
  KmsKeyType,
  KmsProvider,
  KmsPublicKey,
  KmsRequestError,
  KmsUnavailableError,
  WrappedKey,
} from './kms-provider';
import { assertKeyName, parseWrapped } from './kms-names';

export interface VaultKmsOptions {
  address: string;
  /**
   * A token, or an AppRole to log in with: again when the token's lease is nearly over or it is
   * refused. `secretId` may be a function (KMS_VAULT_SECRET_ID_FILE read at every login), so a
   * secret id renewed outside the process is used without a restart.
   */
  token?: string;
  appRole?: { roleId: string; secretId: string | (() => string) };
  /** Mount path of the transit engine. */
  mount: string;
  /** Prepended to every key name, so one Vault can serve several installations. */
  keyPrefix: string;
  timeoutMs: number;
}

interface KeyData {
  type: string;
  latest_version: number;
  min_decryption_version: number;
  /** Symmetric keys: unix seconds. Asymmetric keys: creation_time and public_key (ed25519: base64 of the raw key). */
  keys: Record<string, number | { creation_time: string; public_key?: string }>;
}

/**
 * Vault or OpenBao transit through node-vault. Key material never leaves Vault; data keys come
 * from `datakey/plaintext`. node-vault's transit helpers hard-code the `transit/` mount, so the
 * generic read/write calls are used with the configured mount.
 *
 * Errors: no answer (refused, reset, timeout) and 5xx (503 = sealed or standby) become
 * KmsUnavailableError; 4xx become KmsRequestError with a message of our own, since Vault's texts
 * and node-vault's errors (which hold the request, token header included) must not travel.
 */
export class VaultKmsProvider implements KmsProvider {
  readonly kind = 'vault' as const;
  private readonly vault: NodeVault.client;
  private login?: Promise<void>;
  /** When the AppRole token's lease runs out (ms), less a margin: the next call logs in first. */
  private loginExpiresAt = Infinity;

  constructor(private readonly options: VaultKmsOptions) {
    if (!options.token && !options.appRole) throw new Error('the vault KMS needs a token or an AppRole');
    const settings: NodeVault.VaultOptions & { rpDefaults: { strictSSL: boolean } } = {
      endpoint: options.address,
      token: options.token,
      noCustomHTTPVerbs: true,
      requestOptions: { timeout: options.timeoutMs },
      // node-vault falls back to VAULT_SKIP_VERIFY, which would turn TLS verification off from
      // outside Coffer's configuration; verification is always on.
      rpDefaults: { strictSSL: true },
    };
    this.vault = NodeVault(settings);
    // Likewise VAULT_TOKEN, VAULT_PREFIX and VAULT_NAMESPACE: only Coffer's own settings count.
    Object.assign(this.vault, { token: options.token ?? '', pathPrefix: '', namespace: undefined });
  }

  async health(): Promise<KmsHealth> {
    try {
      // node-vault resolves sys/health's body whatever the status (503 sealed, 429 standby).
      const body = await this.vault.health({ standbyok: true });
      if (!body || typeof body.sealed !== 'boolean') return { reachable: false, sealed: false, detail: 'unexpected health answer' };
      const detail = body.initialized === false ? 'not initialized' : body.version ? `version ${body.version}` : undefined;
      return { reachable: true, sealed: body.sealed, detail };
    } catch (error) {
      return { reachable: false, sealed: false, detail: networkCode(error) ?? 'unreachable' };
    }
  }

  async ensureKey(name: string, type: KmsKeyType = 'aes256-gcm96'): Promise<void> {
    // Vault answers an existing key with success whatever its type, so the type is checked after.
    await this.call('write', `keys/${this.key(name)}`, { type });
    const key = await this.readKey(name);
    if (key.type !== type) throw new KmsRequestError(`key ${name} exists with another type (${key.type})`, 400);
  }

  async keyInfo(name: string): Promise<KmsKeyInfo> {
    const key = await this.readKey(name);
    if (key.type !== 'aes256-gcm96' && key.type !== 'ed25519') {
      throw new KmsRequestError(`key ${name} has a type Coffer does not use (${key.type})`, 400);
    }
    return {
      name,
      type: key.type,
      latestVersion: key.latest_version,
      minDecryptionVersion: key.min_decryption_version,
      versions: Object.entries(key.keys)
        .map(([version, created]) => ({
          version: Number(version),
          // Symmetric keys give unix seconds; asymmetric ones an object with creation_time.
          createdAt: typeof created === 'number' ? new Date(created * 1000) : new Date(created.creation_time),
        }))
        .sort((a, b) => a.version - b.version),
    };
  }

  async rotate(name: string): Promise<number> {
    const answer = await this.call('write', `keys/${this.key(name)}/rotate`, {});
    // Newer servers answer with the key, older ones with 204.
    return answer?.data?.latest_version ?? (await this.readKey(name)).latest_version;
  }

  async setMinDecryptionVersion(name: string, version: number): Promise<void> {
    if (!Number.isInteger(version) || version < 1) throw new KmsRequestError('min_decryption_version must be at least 1', 400);
    await this.call('write', `keys/${this.key(name)}/config`, { min_decryption_version: version });
  }

  async generateDataKey(name: string): Promise<DataKey> {
    const { data } = await this.call('write', `datakey/plaintext/${this.key(name)}`, { bits: 256 });
    return { plaintext: Buffer.from(data.plaintext, 'base64'), wrapped: data.ciphertext, keyVersion: data.key_version };
  }

  async wrap(name: string, plaintext: Buffer): Promise<WrappedKey> {
    const { data } = await this.call('write', `encrypt/${this.key(name)}`, { plaintext: plaintext.toString('base64') });
    return { wrapped: data.ciphertext, keyVersion: data.key_version };
  }

  async unwrap(name: string, wrapped: string): Promise<Buffer> {
    parseWrapped(wrapped, 'vault');
    const { data } = await this.call('write', `decrypt/${this.key(name)}`, { ciphertext: wrapped });
    return Buffer.from(data.plaintext, 'base64');
  }

  async rewrap(name: string, wrapped: string): Promise<WrappedKey> {
    parseWrapped(wrapped, 'vault');
    const { data } = await this.call('write', `rewrap/${this.key(name)}`, { ciphertext: wrapped });
    return { wrapped: data.ciphertext, keyVersion: data.key_version };
  }

  async sign(name: string, data: Buffer): Promise<string> {
    const answer = await this.call('write', `sign/${this.key(name)}`, { input: data.toString('base64') });
    return answer.data.signature;
  }

  async verify(name: string, data: Buffer, signature: string): Promise<boolean> {
    parseWrapped(signature, 'vault');
    const answer = await this.call('write', `verify/${this.key(name)}`, {
      input: data.toString('base64'),
      signature,
    });
    return answer.data.valid === true;
  }

  /** `GET transit/keys/:name` answers `keys: {"1": {public_key, creation_time, name}}` for asymmetric keys. */
  async publicKeys(name: string): Promise<KmsPublicKey[]> {
    const key = await this.readKey(name);
    if (key.type !== 'ed25519') throw new KmsRequestError(`key ${name} is not an ed25519 key`, 400);
    return Object.entries(key.keys)
      .map(([version, v]) => {
        if (typeof v !== 'object' || typeof v.public_key !== 'string') throw new KmsRequestError(`key ${name} has no public key for version ${version}`, 502);
        return { version: Number(version), publicKey: v.public_key, createdAt: new Date(v.creation_time) };
      })
      .sort((a, b) => a.version - b.version);
  }

  private async readKey(name: string): Promise<KeyData> {
    const answer = await this.call('read', `keys/${this.key(name)}`);
    return answer.data;
  }

  private key(name: string): string {
    assertKeyName(name);
    const prefixed = `${this.options.keyPrefix}${name}`;
    assertKeyName(prefixed);
    return prefixed;
  }

  /** One transit request, logged in first if needed; an AppRole token refused once is renewed. */
  private async call(verb: 'read' | 'write', path: string, body?: unknown): Promise<any> {
    const send = () =>
      verb === 'read'
        ? this.vault.read(`${this.options.mount}/${path}`)
        : this.vault.write(`${this.options.mount}/${path}`, body);
    await this.authenticate();
    try {
      return await send();
    } catch (error) {
      if (this.options.appRole && statusOf(error) === 403) {
        this.login = undefined;
        await this.authenticate();
        return send().catch((again: unknown) => Promise.reject(translate(again)));
      }
      throw translate(error);
    }
  }

  private async authenticate(): Promise<void> {
    const appRole = this.options.appRole;
    if (this.options.token || !appRole) return;
    if (this.login && Date.now() >= this.loginExpiresAt) this.login = undefined;
    this.login ??= Promise.resolve()
      .then(() => this.vault.approleLogin({ role_id: appRole.roleId, secret_id: typeof appRole.secretId === 'function' ? appRole.secretId() : appRole.secretId }))
      .then((answer: { auth?: { lease_duration?: number } } | undefined) => {
        const lease = Number(answer?.auth?.lease_duration);
        // Renewed at 80 % of its lease: never presented expired, so no call fails on the way.
        this.loginExpiresAt = lease > 0 ? Date.now() + lease * 800 : Infinity;
      })
      .catch((error: unknown) => {
        this.login = undefined;
        const translated = translate(error);
        // A refused login (a secret id expired or not yet renewed) leaves Coffer without its
        // keys as surely as a sealed server: unavailable (503), not the caller's fault.
        throw translated instanceof KmsRequestError
          ? new KmsUnavailableError(`KMS unavailable: Vault AppRole login refused (${translated.status})`)
          : translated;
      });
    await this.login;
  }
}

function statusOf(error: unknown): number | undefined {
  const response = (error as { response?: { statusCode?: unknown } } | undefined)?.response;
  return typeof response?.statusCode === 'number' ? response.statusCode : undefined;
}

function networkCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Vault's answer as one of our errors, with a message that carries no input and no token. */
function translate(error: unknown): Error {
  if (error instanceof KmsRequestError || error instanceof KmsUnavailableError) return error;
  const status = statusOf(error);
  if (status === undefined) {
    // No HTTP answer: refused, reset, DNS, timeout (axios ECONNABORTED / ETIMEDOUT).
    return new KmsUnavailableError(`KMS unavailable: Vault unreachable (${networkCode(error) ?? 'no answer'})`);
  }
  if (status === 503) return new KmsUnavailableError('KMS unavailable: Vault is sealed or not active (503)');
  if (status >= 500 || status === 429 || status === 473) return new KmsUnavailableError(`KMS unavailable: Vault answered ${status}`);
  const vaultMessage = error instanceof Error ? error.message : '';
  if (status === 403) return new KmsRequestError('Vault denied the request: bad or expired token, or policy (403)', 403);
  if (status === 404) return new KmsRequestError('unknown key or path in Vault (404)', 404);
  if (/disallowed by policy/.test(vaultMessage)) {
    return new KmsRequestError('key version is disallowed by policy (below min_decryption_version)', status);
  }
  if (/authentication failed|unable to decrypt|invalid ciphertext|invalid key version|could not decode/.test(vaultMessage)) {
    return new KmsRequestError('wrapped value failed authentication (tampered, or not wrapped under this key)', status);
  }
  if (/not found/.test(vaultMessage)) return new KmsRequestError('unknown key in Vault', status);
  if (/does not support/.test(vaultMessage)) return new KmsRequestError('the key type does not support this operation', status);
  return new KmsRequestError(`Vault refused the request (${status})`, status);
}
