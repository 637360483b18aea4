import { Inject, Injectable } from '@nestjs/common';
import type { ClientBase } from 'pg';
import { AuditParams, AuditService, currentAuditScope } from '@coffer/audit';
import { EncryptedFieldCodec, FieldCodec } from '@coffer/crypto';
import { KMS, KmsProvider, KmsRequestError, orgKeyName } from '@coffer/kms';
import { SpoolService } from '@coffer/spool';
import { Actor, OrgRef } from '@coffer/tenancy';
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
    private readonly audit: AuditService,
    private readonly spool: SpoolService,
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
   * Provisioning's key step, as the owner under the org database's migration lock: the org's
   * KMS key, its field and index keys, its spool key (libs/spool: existing orgs get theirs at
   * the next start), then every row written before encryption sealed.
   * Idempotent; each key it creates is audited at once (auditKeyOperation).
   */
  async prepare(owner: ClientBase, org: OrgRef): Promise<{ sealedRows: number }> {
    const keyName = orgKeyName(org.id);
    await this.ensureOrgKey(org, keyName);
    let keys = await listFieldKeys(owner);
    for (const purpose of ['field', 'index'] as FieldKeyPurpose[]) {
      if (keys.some((k) => k.purpose === purpose)) continue;
      const dek = await this.kms.generateDataKey(keyName);
      dek.plaintext.fill(0);
      await insertFieldKey(owner, { purpose, wrapped: dek.wrapped, kmsKeyVersion: dek.keyVersion });
      await this.auditKeyOperation({
        action: 'kms.data_key.created',
        target: { orgId: org.id, keyName },
        keyName,
        keyVersion: dek.keyVersion,
        purpose,
      });
    }
    const spoolKey = await this.spool.prepare(owner, org);
    if (spoolKey) {
      await this.auditKeyOperation({
        action: 'kms.data_key.created',
        target: { orgId: org.id, keyName },
        keyName,
        keyVersion: spoolKey.keyVersion,
        purpose: 'spool',
      });
    }
    keys = await listFieldKeys(owner);
    this.wrapped.delete(org.id);
    return { sealedRows: await sealLegacyRows(owner, await this.unwrap(org, keys)) };
  }

  private async ensureOrgKey(org: OrgRef, keyName: string): Promise<void> {
    try {
      await this.kms.keyInfo(keyName);
      return;
    } catch (error) {
      // Unavailable stops provisioning; refused means the key is not there yet.
      if (!(error instanceof KmsRequestError)) throw error;
    }
    await this.kms.ensureKey(keyName);
    const { latestVersion } = await this.kms.keyInfo(keyName);
    await this.auditKeyOperation({ action: 'kms.key.created', target: { orgId: org.id, keyName }, keyName, keyVersion: latestVersion });
  }

  /**
   * On the control plane's chain (where org creation is recorded), with the actor and request
   * of the current scope if there is one (the org-creation request, the CLI command), in a
   * transaction of its own: the KMS key exists whether or not the request goes on to commit,
   * and a retry finds it and records nothing, so the entry must not roll back with the request.
   */
  private async auditKeyOperation(entry: AuditParams): Promise<void> {
    const scope = currentAuditScope();
    await this.audit.record(this.audit.chain(undefined), scope?.actor ?? PROVISIONING, [entry], scope?.source);
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

const PROVISIONING: Actor = { kind: 'system', id: 'system:org-provisioning' };