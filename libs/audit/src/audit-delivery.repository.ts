import { Inject, Injectable } from '@nestjs/common';
import { Client as S3Client } from 'minio';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { OutsideTransaction, transaction } from '@coffer/database';
import { EgressPolicy } from '@coffer/http';
import { AuditRow, ChainedEntry, fromRow } from './audit-chain';
import type { AuditChain } from './audit.repository';

export interface StoredDestination {
  endpoint: string;
  region: string;
  bucket: string;
  prefix: string;
  /** The data key sealing `credentials`, wrapped by the org's KMS key. */
  credentialsKey: string;
  credentials: Buffer;
  updatedAt: Date;
}

export interface DeliveryBatch {
  batch: number;
  firstSeq: number;
  lastSeq: number;
  plannedAt: Date;
  previousDigestSha256: Buffer | null;
}

export interface BucketCredentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/**
 * Delivery bookkeeping in the org's database and the customer's bucket. What delivery reads and
 * records commits on its own, outside the caller's transaction (@OutsideTransaction): a delivery
 * job's progress must survive the job dying. The destination itself changes in the request's.
 */
@Injectable()
export class AuditDeliveryRepository {
  /** The bucket is the org's choice: every request to it goes through the egress policy. */
  private readonly egress: EgressPolicy;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.egress = new EgressPolicy(config.OUTBOUND_ALLOWED_HOSTS);
  }

  @OutsideTransaction()
  async destination(chain: AuditChain): Promise<StoredDestination | undefined> {
    const { rows } = await chain.pool().query('SELECT * FROM audit_destination');
    const row = rows[0];
    return (
      row && {
        endpoint: row.endpoint,
        region: row.region,
        bucket: row.bucket,
        prefix: row.prefix,
        credentialsKey: row.credentials_key,
        credentials: row.credentials,
        updatedAt: row.updated_at,
      }
    );
  }

  async saveDestination(chain: AuditChain, d: Omit<StoredDestination, 'updatedAt'>): Promise<void> {
    // In the request's unit of work: the change commits with its audit entry.
    await chain.pool().query(
      `INSERT INTO audit_destination (endpoint, region, bucket, prefix, credentials_key, credentials)
       VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (singleton) DO UPDATE SET endpoint = $1, region = $2, bucket = $3, prefix = $4,
         credentials_key = $5, credentials = $6, updated_at = now()`,
      [d.endpoint, d.region, d.bucket, d.prefix, d.credentialsKey, d.credentials],
    );
  }

  async removeDestination(chain: AuditChain): Promise<boolean> {
    return ((await chain.pool().query('DELETE FROM audit_destination')).rowCount ?? 0) > 0;
  }

  async progress(chain: AuditChain): Promise<{ deliveredThrough: number; lastDeliveredAt: Date | null; batches: number }> {
    const { rows } = await chain
      .pool()
      .query(
        `SELECT coalesce(max(last_seq) FILTER (WHERE delivered_at IS NOT NULL), 0) AS through,
                max(delivered_at) AS at, count(*) FILTER (WHERE delivered_at IS NOT NULL) AS batches
         FROM audit_deliveries`,
      );
    return { deliveredThrough: Number(rows[0].through), lastDeliveredAt: rows[0].at, batches: Number(rows[0].batches) };
  }

  /**
   * The batch to deliver: the one planned but not yet delivered (a previous run died with it),
   * else a new one from after the last delivered entry, at most `size` entries; none when the
   * bucket is up to date. Its range is fixed here, before any upload.
   */
  @OutsideTransaction()
  nextBatch(chain: AuditChain, size: number): Promise<DeliveryBatch | undefined> {
    return transaction(chain.pool(), async (c) => {
      const last = (await c.query('SELECT * FROM audit_deliveries ORDER BY batch DESC LIMIT 1 FOR UPDATE')).rows[0];
      if (last && !last.delivered_at) return toBatch(last);
      const first = last ? Number(last.last_seq) + 1 : 1;
      const head = Number((await c.query('SELECT coalesce(max(seq), 0) AS seq FROM audit_log')).rows[0].seq);
      if (head < first) return undefined;
      const { rows } = await c.query(
        `INSERT INTO audit_deliveries (batch, first_seq, last_seq, planned_at, previous_digest_sha256)
         VALUES ($1, $2, $3, date_trunc('milliseconds', now()), $4) RETURNING *`,
        [last ? Number(last.batch) + 1 : 1, first, Math.min(head, first + size - 1), last?.digest_sha256 ?? null],
      );
      return toBatch(rows[0]);
    });
  }

  @OutsideTransaction()
  async markDelivered(chain: AuditChain, batch: number, digestSha256: Buffer): Promise<void> {
    await chain.pool().query('UPDATE audit_deliveries SET digest_sha256 = $2, delivered_at = now() WHERE batch = $1', [batch, digestSha256]);
  }

  @OutsideTransaction()
  async entries(chain: AuditChain, firstSeq: number, lastSeq: number): Promise<ChainedEntry[]> {
    const { rows } = await chain
      .pool()
      .query<AuditRow>('SELECT * FROM audit_log WHERE seq BETWEEN $1 AND $2 ORDER BY seq', [firstSeq, lastSeq]);
    return rows.map(fromRow);
  }

  /** Rejects with EgressRefused when the egress policy refuses the endpoint's host. */
  checkEndpoint(endpoint: string): Promise<void> {
    return this.egress.check(new URL(endpoint).hostname);
  }

  bucket(destination: Pick<StoredDestination, 'endpoint' | 'region'>, credentials: BucketCredentials): S3Client {
    const url = new URL(destination.endpoint);
    const useSSL = url.protocol === 'https:';
    return new S3Client({
      // An IPv6 address without its URL brackets, as the client takes it.
      endPoint: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: url.port ? Number(url.port) : useSSL ? 443 : 80,
      useSSL,
      transportAgent: useSSL ? this.egress.httpsAgent : this.egress.httpAgent,
      region: destination.region,
      accessKey: credentials.accessKeyId,
      secretKey: credentials.secretAccessKey,
      pathStyle: true,
    });
  }
}

function toBatch(row: Record<string, unknown>): DeliveryBatch {
  return {
    batch: Number(row.batch),
    firstSeq: Number(row.first_seq),
    lastSeq: Number(row.last_seq),
    plannedAt: row.planned_at as Date,
    previousDigestSha256: (row.previous_digest_sha256 as Buffer | null) ?? null,
  };
}
