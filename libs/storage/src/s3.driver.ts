import type { Readable } from 'node:stream';
import { Client, RETENTION_MODES } from 'minio';
import { assertStorageKey, ByteRange, PutOptions, StorageDriver, StorageObjectNotFound } from './storage-driver';

export interface S3Settings {
  endpoint: string;
  bucket: string;
  accessKey: string;
  secretKey: string;
  region: string;
}

/**
 * Objects in one S3 bucket through the `minio` client, path-style. Single PUTs only (no
 * multipart), so it works on every S3 server, s3rver included (ADR 0003).
 */
export class S3StorageDriver implements StorageDriver {
  readonly kind = 's3';
  private readonly client: Client;

  constructor(private readonly settings: S3Settings) {
    const url = new URL(settings.endpoint);
    const useSSL = url.protocol === 'https:';
    this.client = new Client({
      endPoint: url.hostname,
      port: url.port ? Number(url.port) : useSSL ? 443 : 80,
      useSSL,
      region: settings.region,
      accessKey: settings.accessKey,
      secretKey: settings.secretKey,
      pathStyle: true,
    });
  }

  /**
   * Creates the bucket if missing and, where the server supports it and the credentials allow,
   * turns on its default encryption (SSE-S3): a second layer under Coffer's own (ADR 0003).
   */
  async ready(): Promise<void> {
    if (!(await this.client.bucketExists(this.settings.bucket))) await this.client.makeBucket(this.settings.bucket, this.settings.region);
    if (await this.serverSideEncryption()) return;
    await this.client
      .setBucketEncryption(this.settings.bucket, { Rule: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] })
      .catch(() => undefined); // not supported (s3rver) or not permitted: reported as none
  }

  async serverSideEncryption(): Promise<string | null> {
    try {
      const config = await this.client.getBucketEncryption(this.settings.bucket);
      const rules = [config?.ServerSideEncryptionConfiguration?.Rule ?? []].flat() as { ApplyServerSideEncryptionByDefault?: { SSEAlgorithm?: string } }[];
      return rules.map((r) => r.ApplyServerSideEncryptionByDefault?.SSEAlgorithm).find(Boolean) ?? null;
    } catch {
      return null; // no configuration, not implemented, or not permitted
    }
  }

  async put(key: string, body: Buffer, options: PutOptions = {}): Promise<void> {
    assertStorageKey(key);
    const stored = await this.client.putObject(this.settings.bucket, key, body, body.length, { 'Content-Type': 'application/octet-stream' });
    if (options.retainUntil) {
      if (!stored.versionId) throw new Error(`bucket ${this.settings.bucket} has no versioning, so no object lock: ${key} cannot be retained`);
      // PutObjectRetention (with its Content-MD5, which the client adds): the server then refuses
      // to delete or overwrite this version before the date, whoever asks, in compliance mode.
      // It fails on a bucket without object lock, and so does the write: the caller asked for it.
      await this.client.putObjectRetention(this.settings.bucket, key, {
        versionId: stored.versionId,
        mode: RETENTION_MODES.COMPLIANCE,
        retainUntilDate: options.retainUntil.toISOString(),
      });
    }
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    assertStorageKey(key);
    try {
      return range
        ? await this.client.getPartialObject(this.settings.bucket, key, range.start, range.end - range.start + 1)
        : await this.client.getObject(this.settings.bucket, key);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'NoSuchKey' || code === 'NotFound') throw new StorageObjectNotFound(key);
      throw error;
    }
  }

  /**
   * One DELETE per object, one at a time: the multi-object delete (POST ?delete) is not
   * implemented alike everywhere, and s3rver answers it, or concurrent DELETEs under one prefix,
   * with a 500. Deletes run only in the background sweep.
   */
  async delete(keys: readonly string[]): Promise<void> {
    keys.forEach(assertStorageKey);
    for (const key of keys) await this.client.removeObject(this.settings.bucket, key);
  }

  async *list(prefix: string): AsyncIterable<string> {
    for await (const item of this.client.listObjectsV2(this.settings.bucket, prefix, true)) {
      if (item.name) yield item.name as string;
    }
  }
}
