import { Inject, Injectable } from '@nestjs/common';
import type { ClientBase } from 'pg';
import { randomId } from '@coffer/crypto';
import { OrgKey, OrgKeyService } from '@coffer/keys';
import { KMS, KmsProvider, KmsUnavailableError, orgKeyName } from '@coffer/kms';
import type { OrgRef } from '@coffer/tenancy';
import { openFromSpool, sealToSpool, spoolPrivateKey, spoolPublicKey } from './spool-crypto';
import { insertSpoolKey, spoolKeyOf, SpoolRepository } from './spool.repository';

/**
 * The org's spool key (libs/spool/README.md): data keys made while the KMS is down are sealed to
 * its public key, which needs no KMS; opening them needs its private key, which only the KMS can
 * unwrap. So the spool survives restarts (everything is in the org database) and holds nothing
 * readable without the KMS.
 */
@Injectable()
export class SpoolService {
  /** Public keys never change (one key per org, rotation only rewraps its private half). */
  private readonly publicKeys = new Map<string, { id: string; publicKey: Buffer }>();

  constructor(
    private readonly repository: SpoolRepository,
    @Inject(KMS) private readonly kms: KmsProvider,
    private readonly orgKeys: OrgKeyService,
  ) {}

  /**
   * Provisioning's spool step, as the owner under the org database's migration lock, after the
   * field keys: creates the org's spool key under its KMS key (`key`, from libs/keys'
   * OrgKeyService) if it has none, recorded at once by libs/keys (`kms.data_key.created`,
   * purpose `spool`). Idempotent: orgs from before the spool get theirs at the next API start.
   */
  async prepare(owner: ClientBase, key: OrgKey): Promise<void> {
    if (await spoolKeyOf(owner)) return;
    const dek = await this.kms.generateDataKey(key.name);
    try {
      const publicKey = spoolPublicKey(spoolPrivateKey(dek.plaintext));
      await insertSpoolKey(owner, { id: randomId(8), wrappedKey: dek.wrapped, kmsKeyVersion: dek.keyVersion, publicKey });
    } finally {
      dek.plaintext.fill(0);
    }
    await this.orgKeys.recordDataKeyCreated(key, 'spool', dek.keyVersion);
  }

  /** Seals `dek` for row `rowId` of the org; works with the KMS down. */
  async seal(org: OrgRef, rowId: string, dek: Buffer): Promise<string> {
    let key = this.publicKeys.get(org.id);
    if (!key) {
      const row = await this.repository.key(org);
      // Provisioning did not finish: without a spool key there is nowhere safe to queue.
      if (!row) throw new KmsUnavailableError();
      key = { id: row.id, publicKey: row.publicKey };
      if (this.publicKeys.size >= 10_000) this.publicKeys.clear();
      this.publicKeys.set(org.id, key);
    }
    return sealToSpool(key.id, key.publicKey, { orgId: org.id, rowId }, dek);
  }

  /**
   * The DEK sealed for row `rowId`: the spool private key is unwrapped by the KMS (through the
   * process's data-key cache) and zero-filled once used. Throws SpoolIntegrityError if it does
   * not authenticate, KmsUnavailableError while the KMS is down.
   */
  async open(org: OrgRef, rowId: string, sealed: string): Promise<Buffer> {
    const row = await this.repository.key(org);
    if (!row) throw new Error(`organization ${org.id} has no spool key`);
    const secret = await this.kms.unwrap(orgKeyName(org.id), row.wrappedKey);
    try {
      return openFromSpool(row.id, spoolPrivateKey(secret), { orgId: org.id, rowId }, sealed);
    } finally {
      secret.fill(0);
    }
  }
}
