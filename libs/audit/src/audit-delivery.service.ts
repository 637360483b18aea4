import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { aeadOpen, aeadSeal } from '@coffer/crypto';
import { OutsideTransaction } from '@coffer/database';
import { AppError, EgressRefused } from '@coffer/http';
import { KMS, KmsProvider, orgKeyName } from '@coffer/kms';
import type { OrgRef } from '@coffer/tenancy';
import { canonicalJson } from './audit-chain';
import { auditDetails } from './audit-context';
import { AuditDestinationInput } from './audit-delivery.dto';
import { AuditDeliveryRepository, BucketCredentials, DeliveryBatch, StoredDestination } from './audit-delivery.repository';
import { publicEntry } from './audit.dto';
import { AuditRepository } from './audit.repository';
import { AuditService } from './audit.service';
import { AuditAnchorStore } from './audit-anchors';
import { AuditAnchor, AuditPublicKey, checkpointKeyName } from './audit-signing';

/**
 * A batch's digest (after CloudTrail's digest files): what the batch object holds, the chain's
 * hash at its last entry, the previous digest's SHA-256, the newest checkpoint anchor it covers
 * and the public keys, signed by the chain's key (docs/audit-verification.md). Every
 * field is fixed when the batch is planned, and ed25519 signatures are deterministic, so a
 * batch delivered twice is the same bytes twice.
 */
export interface AuditDigest {
  /** `/2` adds `checkpoint` and `publicKeys`; `/1` digests (delivered before) have neither. */
  format: 'coffer-audit-digest/2';
  chain: string;
  batch: number;
  firstSeq: number;
  lastSeq: number;
  lastEntryHash: string;
  object: string;
  objectSha256: string;
  previousDigestSha256: string | null;
  plannedAt: string;
  keyName: string;
  /**
   * The newest checkpoint anchor at or before `lastSeq` (a signed tree head, as in
   * `anchors/<chain>/<seq>.json`), or null when none was made yet: the bucket then holds the
   * database's checkpoints too, and an offline verifier checks the entries against them.
   */
  checkpoint: AuditAnchor | null;
  /** Every version of the chain's signing key (also GET /api/v1/audit/keys): verifiable offline. */
  publicKeys: AuditPublicKey[];
  signature: string;
}

/** Ships each org's chain to the org's own bucket, at least once, in order, resumable. */
@Injectable()
export class AuditDeliveryService {
  constructor(
    private readonly deliveries: AuditDeliveryRepository,
    private readonly audit: AuditRepository,
    @Inject(KMS) private readonly kms: KmsProvider,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly anchors: AuditAnchorStore,
    private readonly auditService: AuditService,
  ) {}

  /**
   * Checks that the egress policy allows the endpoint and that the bucket answers to the
   * credentials, then stores them sealed. Records where the log went and where it goes now
   * (never the credentials) in the change's entry.
   */
  async configure(org: OrgRef, input: AuditDestinationInput): Promise<void> {
    const { accessKeyId, secretAccessKey, ...where } = input;
    const previous = await this.deliveries.destination(this.audit.chain(org));
    const place = (d: { endpoint: string; region: string; bucket: string; prefix: string }) =>
      ({ endpoint: d.endpoint, region: d.region, bucket: d.bucket, prefix: d.prefix });
    auditDetails({ previous: previous ? place(previous) : null, destination: place(where) });
    // The egress policy, first on the endpoint's host, then on the HEAD's own connection (a name
    // may resolve elsewhere by then); a lookup failure is left to the HEAD to report.
    const rethrowRefusal = (error: unknown) => {
      if (error instanceof EgressRefused) throw new AppError('destination_not_allowed', error.message, { refused: error.refused });
    };
    await this.deliveries.checkEndpoint(where.endpoint).catch(rethrowRefusal);
    // The S3 client checks its settings when it is made, and throws: a refusal of the input, not a 500.
    let client: ReturnType<AuditDeliveryRepository['bucket']>;
    try {
      client = this.deliveries.bucket(where, { accessKeyId, secretAccessKey });
    } catch {
      throw new AppError('validation_failed', 'request failed validation', [
        { path: 'endpoint', code: 'invalid_format', message: 'an endpoint the S3 client does not accept' },
      ]);
    }
    const reachable = await client
      .bucketExists(where.bucket)
      .catch((error) => {
        rethrowRefusal(error);
        return false;
      });
    if (!reachable) {
      throw new AppError('audit_destination_unreachable', `bucket ${where.bucket} at ${where.endpoint} does not answer to these credentials`);
    }
    await this.kms.ensureKey(orgKeyName(org.id));
    const key = await this.kms.generateDataKey(orgKeyName(org.id));
    const credentials = aeadSeal(key.plaintext, Buffer.from(JSON.stringify({ accessKeyId, secretAccessKey })), credentialsAad(org));
    await this.deliveries.saveDestination(this.audit.chain(org), { ...where, credentialsKey: key.wrapped, credentials });
  }

  async describe(org: OrgRef) {
    const described = await this.progress(org);
    if (!described) throw new AppError('audit_destination_not_found', 'no audit destination is configured');
    return described;
  }

  /** Where the org's log goes and how far delivery has got; undefined with no destination. */
  async progress(org: OrgRef) {
    const chain = this.audit.chain(org);
    const destination = await this.deliveries.destination(chain);
    if (!destination) return undefined;
    const [progress, head] = await Promise.all([this.deliveries.progress(chain), this.audit.head(chain)]);
    return {
      endpoint: destination.endpoint,
      region: destination.region,
      bucket: destination.bucket,
      prefix: destination.prefix,
      updatedAt: destination.updatedAt.toISOString(),
      deliveredThrough: progress.deliveredThrough,
      lastDeliveredAt: progress.lastDeliveredAt?.toISOString() ?? null,
      batches: progress.batches,
      pendingEntries: (head?.seq ?? 0) - progress.deliveredThrough,
    };
  }

  async remove(org: OrgRef): Promise<void> {
    if (!(await this.deliveries.removeDestination(this.audit.chain(org)))) {
      throw new AppError('audit_destination_not_found', 'no audit destination is configured');
    }
  }

  async hasDestination(org: OrgRef): Promise<boolean> {
    return (await this.deliveries.destination(this.audit.chain(org))) !== undefined;
  }

  /**
   * Delivers every batch up to the chain's head; returns how many. This whole operation owns its
   * transaction boundary: it runs outside the caller's unit of work (the delivery job's), and each
   * step records its progress on its own, so a delivery cut short resumes where it stopped.
   */
  @OutsideTransaction()
  async deliver(org: OrgRef): Promise<number> {
    const chain = this.audit.chain(org);
    const destination = await this.deliveries.destination(chain);
    if (!destination) return 0;
    const bucket = this.deliveries.bucket(destination, await this.openCredentials(org, destination));
    let delivered = 0;
    for (;;) {
      const batch = await this.deliveries.nextBatch(chain, this.config.AUDIT_DELIVERY_BATCH_SIZE);
      if (!batch) return delivered;
      const entries = await this.deliveries.entries(chain, batch.firstSeq, batch.lastSeq);
      const object = `${destination.prefix}${org.id}/entries/${pad(batch.firstSeq)}-${pad(batch.lastSeq)}.ndjson.gz`;
      const body = gzipSync(entries.map((e) => `${JSON.stringify(publicEntry(e))}\n`).join(''));
      await bucket.putObject(destination.bucket, object, body, body.length, { 'Content-Type': 'application/x-ndjson', 'Content-Encoding': 'gzip' });
      const digest = await this.digest(chain.id, batch, object, body, entries[entries.length - 1].hash);
      const digestBytes = Buffer.from(canonicalJson(digest));
      await bucket.putObject(destination.bucket, `${destination.prefix}${org.id}/digests/${pad(batch.batch)}.json`, digestBytes, digestBytes.length, {
        'Content-Type': 'application/json',
      });
      await this.deliveries.markDelivered(chain, batch.batch, sha256(digestBytes));
      delivered++;
    }
  }

  private async digest(chainId: string, batch: DeliveryBatch, object: string, body: Buffer, lastHash: Buffer): Promise<AuditDigest> {
    const keyName = checkpointKeyName(chainId);
    const unsigned = {
      format: 'coffer-audit-digest/2' as const,
      chain: chainId,
      batch: batch.batch,
      firstSeq: batch.firstSeq,
      lastSeq: batch.lastSeq,
      lastEntryHash: lastHash.toString('hex'),
      object,
      objectSha256: sha256(body).toString('hex'),
      previousDigestSha256: batch.previousDigestSha256?.toString('hex') ?? null,
      plannedAt: batch.plannedAt.toISOString(),
      keyName,
      checkpoint: (await this.anchors.latestAtOrBefore(chainId, batch.lastSeq)) ?? null,
    };
    await this.kms.ensureKey(keyName, 'ed25519');
    const publicKeys = await this.auditService.publicKeys(chainId, { fresh: true });
    const signed = { ...unsigned, publicKeys };
    return { ...signed, signature: await this.kms.sign(keyName, Buffer.from(canonicalJson(signed))) };
  }

  private async openCredentials(org: OrgRef, destination: StoredDestination): Promise<BucketCredentials> {
    const key = await this.kms.unwrap(orgKeyName(org.id), destination.credentialsKey);
    return JSON.parse(aeadOpen(key, destination.credentials, credentialsAad(org)).toString('utf8'));
  }
}

/** Binds the sealed credentials to their org: copied into another org's row, they do not open. */
function credentialsAad(org: OrgRef): string {
  return `audit_destination.credentials\0${org.id}`;
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

/** Fixed width, so that keys list in sequence order. */
function pad(n: number): string {
  return String(n).padStart(20, '0');
}
