import { Inject, Injectable } from '@nestjs/common';
import type { ClientBase } from 'pg';
import { EncryptedFieldCodec, FieldCodec } from '@coffer/crypto';
import { OrgKey, OrgKeyService } from '@coffer/keys';
import { KMS, KmsProvider, KmsRequestError, orgKeyName } from '@coffer/kms';
import type { OrgRef } from '@coffer/tenancy';
import { FieldKeysRepository, FieldKeyPurpose, insertFieldKey, listFieldKeys, WrappedFieldKey } from './field-keys.repository';
import { sealLegacyRows } from './sealed-columns';

/**
 * Wrapped keys change only when a key is added or rewrapped; an old wrapping keeps unwrapping
 * until its KMS version is retired, so a minute-old copy is safe and saves a query per request.
 */
const WRAPPED_TTL_MS = 60_000;

/**
 * The org's field codec: its field DEK and blind-index key, stored only wrapped (field_keys)
 * and unwrapped through the process's data-key cache (KMS), so steady-state requests make no
 * KMS call. A KMS outage with the keys not cached surfaces as 503 kms_unavailable.
 */
@Injectable()
export class FieldKeysService {
  private readonly wrapped = new Map<string, { keys: WrappedFieldKey[]; at: number }>();

  constructor(
    private readonly repository: FieldKeysRepository,
    @Inject(KMS) private readonly kms: KmsProvider,
    private readonly orgKeys: OrgKeyService,
  ) {}

  async codec(org: OrgRef): Promise<FieldCodec> {
    const hit = this.wrapped.get(org.id);
    if (hit && Date.now() - hit.at < WRAPPED_TTL_MS) {
      try {
        return await this.unwrap(org, hit.keys);
      } catch (error) {
        // A copy from before a rewrap whose old version has since been retired: read it again.
        if (!(error instanceof KmsRequestError)) throw error;
      }
    }
    const keys = await this.repository.list(org);
    if (this.wrapped.size >= 10_000) this.wrapped.clear();
    this.wrapped.set(org.id, { keys, at: Date.now() });
    return this.unwrap(org, keys);
  }

  /**
   * Provisioning's field-key step, as the owner under the org database's migration lock: the
   * org's field and index keys, made under its KMS key (`key`, from libs/keys' OrgKeyService,
   * which created it). Idempotent; each key it creates is recorded at once by libs/keys.
   */
  async prepare(owner: ClientBase, key: OrgKey): Promise<void> {
    const keys = await listFieldKeys(owner);
    for (const purpose of ['field', 'index'] as FieldKeyPurpose[]) {
      if (keys.some((k) => k.purpose === purpose)) continue;
      const dek = await this.kms.generateDataKey(key.name);
      dek.plaintext.fill(0);
      await insertFieldKey(owner, { purpose, wrapped: dek.wrapped, kmsKeyVersion: dek.keyVersion });
      await this.orgKeys.recordDataKeyCreated(key, purpose, dek.keyVersion);
    }
  }

  /**
   * Provisioning's last step, as the owner under the migration lock, once the keys exist: every
   * row written before field encryption sealed (sealLegacyRows). Returns how many were sealed.
   */
  async sealLegacyRows(owner: ClientBase, org: OrgRef): Promise<{ sealedRows: number }> {
    const keys = await listFieldKeys(owner);
    this.wrapped.delete(org.id);
    return { sealedRows: await sealLegacyRows(owner, await this.unwrap(org, keys)) };
  }

  private async unwrap(org: OrgRef, keys: WrappedFieldKey[]): Promise<FieldCodec> {
    const keyName = orgKeyName(org.id);
    const fieldKeys = keys.filter((k) => k.purpose === 'field');
    const index = keys.find((k) => k.purpose === 'index');
    if (!fieldKeys.length || !index) throw new Error(`organization ${org.id} has no field keys; provisioning did not finish`);
    const byId = new Map<number, Buffer>();
    for (const key of fieldKeys) byId.set(key.id, await this.kms.unwrap(keyName, key.wrapped));
    const current = fieldKeys[fieldKeys.length - 1];
    const indexKey = await this.kms.unwrap(keyName, index.wrapped);
    return new EncryptedFieldCodec({ current: { id: current.id, key: byId.get(current.id)! }, byId, indexKey });
  }
}
