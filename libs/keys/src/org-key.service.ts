import { Inject, Injectable } from '@nestjs/common';
import { AuditParams, AuditService, currentAuditScope } from '@coffer/audit';
import { KMS, KmsProvider, KmsRequestError, orgKeyName } from '@coffer/kms';
import type { Actor, OrgRef } from '@coffer/tenancy';

/** The org's KMS key, as `OrgKeyService.ensure` hands it out: data keys are made under it. */
export interface OrgKey {
  orgId: string;
  /** `coffer-org-<id>`. */
  name: string;
}

/** What a data key made under the org key is for, as its `kms.data_key.created` entry says. */
export type DataKeyPurpose = 'field' | 'index' | 'spool';

/**
 * The existence of each org's KMS key (libs/keys/README.md): it is created at provisioning,
 * here and nowhere else, and recorded on the control plane's chain with every data key made
 * under it. Its versions (rotation, rewrap, retirement) are KeyRotationService's. Destroying it
 * (crypto-shredding) belongs here too: the other end of the same lifecycle, recorded the same way.
 */
@Injectable()
export class OrgKeyService {
  constructor(
    @Inject(KMS) private readonly kms: KmsProvider,
    private readonly audit: AuditService,
  ) {}

  /**
   * Provisioning's first key step: creates the org's KMS key if the KMS does not have it,
   * audited as `kms.key.created` (name, version). Idempotent: a key that exists is returned
   * and nothing is recorded. A KMS that is down stops provisioning with kms_unavailable.
   */
  async ensure(org: OrgRef): Promise<OrgKey> {
    const key: OrgKey = { orgId: org.id, name: orgKeyName(org.id) };
    try {
      await this.kms.keyInfo(key.name);
      return key;
    } catch (error) {
      // Unavailable stops provisioning; refused means the key is not there yet.
      if (!(error instanceof KmsRequestError)) throw error;
    }
    await this.kms.ensureKey(key.name);
    const { latestVersion } = await this.kms.keyInfo(key.name);
    await this.recordKeyOperation({ action: 'kms.key.created', target: { orgId: key.orgId, keyName: key.name }, keyName: key.name, keyVersion: latestVersion });
    return key;
  }

  /**
   * Records a data key that its owner (libs/fields, libs/spool) made under the org key and has
   * just stored: `kms.data_key.created` with its purpose and the key version that wraps it.
   */
  async recordDataKeyCreated(key: OrgKey, purpose: DataKeyPurpose, keyVersion: number): Promise<void> {
    await this.recordKeyOperation({
      action: 'kms.data_key.created',
      target: { orgId: key.orgId, keyName: key.name },
      keyName: key.name,
      keyVersion,
      purpose,
    });
  }

  /**
   * On the control plane's chain (where org creation is recorded), with the actor and request
   * of the current scope if there is one (the org-creation request, the CLI command), in a
   * transaction of its own: the KMS key exists whether or not the request goes on to commit,
   * and a retry finds it and records nothing, so the entry must not roll back with the request.
   */
  private async recordKeyOperation(entry: AuditParams): Promise<void> {
    const scope = currentAuditScope();
    await this.audit.record(this.audit.chain(undefined), scope?.actor ?? PROVISIONING, [entry], scope?.source);
  }
}

const PROVISIONING: Actor = { kind: 'system', id: 'system:org-provisioning' };
