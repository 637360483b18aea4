import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { Inject, Injectable } from '@nestjs/common';
import { audit } from '@coffer/audit';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { randomId } from '@coffer/crypto';
import { AppError } from '@coffer/http';
import { DataKey, KMS, KmsProvider, KmsUnavailableError, orgKeyName } from '@coffer/kms';
import { LOGGER, Logger } from '@coffer/logging';
import { SpoolRepository, SpoolService } from '@coffer/spool';
import {
  ByteRange,
  layoutFor,
  manifestKey,
  ObjectIntegrityError,
  ObjectLayout,
  objectPrefix,
  ObjectTooLarge,
  SealedObjectReader,
  STORAGE,
  StorageDriver,
  writeSealedObject,
} from '@coffer/storage';
import type { OrgRef } from '@coffer/tenancy';
import { PackageVersion, QueuedVersion, StoredVersion } from './package';
import { PackagesRepository } from './packages.repository';

/** How often a running upload tells the sweep it is alive. */
const HEARTBEAT_MS = 60_000;
const SWEEP_BATCH = 100;

export interface UploadRequest {
  name: string;
  createdBy: string;
  contentType: string | undefined;
  /** Content-Length, if the client declared one (absent when chunked). */
  declaredLength: number | undefined;
  body: AsyncIterable<Buffer>;
}

export interface Download {
  version: PackageVersion;
  /** The range served, or undefined for the whole content. */
  range?: ByteRange;
  content: Readable;
}

/**
 * KB packages: each version an object sealed under its own DEK from the org's KMS key
 * (libs/storage/README.md). Uploads stream to storage and become visible only when complete.
 */
@Injectable()
export class PackagesService {
  private readonly layout: ObjectLayout;

  constructor(
    private readonly repository: PackagesRepository,
    @Inject(STORAGE) private readonly storage: StorageDriver,
    @Inject(KMS) private readonly kms: KmsProvider,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly spool: SpoolService,
    private readonly pendingWrites: SpoolRepository,
  ) {
    this.layout = layoutFor(config.PACKAGE_SEGMENT_BYTES, config.PACKAGE_CHUNK_BYTES);
  }

  /**
   * Stores a new version. With the KMS unavailable (or uploads of this name already queued
   * ahead of it), the version's DEK is made here and sealed to the org's spool key instead of
   * wrapped by the KMS (libs/spool/README.md): the content is stored all the same, and the
   * version is queued, invisible, until the worker's flush commits it.
   */
  async upload(org: OrgRef, request: UploadRequest): Promise<PackageVersion | QueuedVersion> {
    const max = this.config.PACKAGE_MAX_BYTES;
    if (request.declaredLength !== undefined && request.declaredLength > max) throw tooLarge(max);
    const ref = { orgId: org.id, objectId: randomId(16) };
    const dek = await this.newDataKey(org, request.name, ref.objectId);
    try {
      await this.repository.startUpload(org, {
        id: ref.objectId,
        name: request.name,
        contentType: request.contentType ?? 'application/octet-stream',
        wrappedDek: dek.wrapped,
        kmsKeyVersion: dek.keyVersion,
        manifestKey: manifestKey(ref),
        createdBy: request.createdBy,
      });
      return await this.store(org, ref, dek, request);
    } finally {
      dek.plaintext.fill(0);
    }
  }

  /**
   * A fresh DEK from the KMS; or, when it is unavailable or this name has queued uploads, one
   * made here and sealed to the spool key (`keyVersion` 0: no KMS version wraps it yet).
   */
  private async newDataKey(org: OrgRef, name: string, objectId: string): Promise<DataKey & { queued: boolean }> {
    if (!(await this.repository.hasPending(org, name))) {
      try {
        // The org's key exists from provisioning on (libs/keys OrgKeyService.ensure).
        return { ...(await this.kms.generateDataKey(orgKeyName(org.id))), queued: false };
      } catch (error) {
        if (!(error instanceof KmsUnavailableError)) throw error;
        this.logger.warn({ org: org.slug, upload: objectId }, 'KMS unavailable; upload queued in the write spool');
      }
    }
    const plaintext = randomBytes(32);
    return { plaintext, wrapped: await this.spool.seal(org, objectId, plaintext), keyVersion: 0, queued: true };
  }

  private async store(org: OrgRef, ref: { orgId: string; objectId: string }, dek: DataKey & { queued: boolean }, request: UploadRequest) {
    const max = this.config.PACKAGE_MAX_BYTES;
    let lastBeat = Date.now();
    try {
      const manifest = await writeSealedObject(this.storage, ref, dek.plaintext, request.body, {
        layout: this.layout,
        maxBytes: max,
        onChunk: async () => {
          if (Date.now() - lastBeat < HEARTBEAT_MS) return;
          lastBeat = Date.now();
          await this.repository.touchUpload(org, ref.objectId);
        },
      });
      if (request.declaredLength !== undefined && manifest.size !== request.declaredLength) {
        throw new AppError('bad_request', 'the body is not as long as its Content-Length');
      }
      const result = { size: manifest.size, sha256: Buffer.from(manifest.sha256, 'hex') };
      const version = dek.queued
        ? await this.repository.markPending(org, ref.objectId, result)
        : await this.repository.commitUpload(org, ref.objectId, result, randomId(16));
      if (!version) throw new AppError('bad_request', 'the upload took too long and was abandoned');
      return dek.queued ? await this.queue(org, version) : version;
    } catch (error) {
      await this.repository.abandonUpload(org, ref.objectId).catch(() => undefined);
      this.logger.warn({ org: org.slug, upload: ref.objectId, err: (error as Error).message }, 'package upload failed; its chunks are left for the sweep');
      if (error instanceof ObjectTooLarge) throw tooLarge(max);
      throw error;
    }
  }

  /** The queue entry of a stored, pending version, in the request's transaction. */
  private async queue(org: OrgRef, version: PackageVersion): Promise<QueuedVersion> {
    const write = await this.pendingWrites.add(org, { id: randomId(16), kind: 'package.version', target: version.id, createdBy: version.createdBy });
    audit({ action: 'package.version_queued', target: { id: version.id, package: version.package, pendingWriteId: write.id } });
    const { version: _none, kmsKeyVersion: _notYet, ...known } = version;
    return { pendingWriteId: write.id, status: write.status, ...known };
  }

  /** A queued upload's status (`GET .../pending-writes/:id`), with its version number once flushed. */
  async pendingWrite(org: OrgRef, id: string) {
    const write = await this.pendingWrites.get(org, id);
    if (!write) throw new AppError('pending_write_not_found', `no pending write ${id}`);
    const target = await this.repository.versionById(org, write.target);
    return {
      id: write.id,
      kind: write.kind,
      status: write.status,
      package: target?.package ?? null,
      version: target?.state === 'committed' ? target.version : null,
      createdAt: write.createdAt,
      flushedAt: write.flushedAt,
      attempts: write.attempts,
      lastError: write.lastError,
    };
  }

  list(org: OrgRef) {
    return this.repository.list(org);
  }

  async describe(org: OrgRef, name: string) {
    const versions = await this.repository.versions(org, name);
    if (!versions.length) throw new AppError('package_not_found', `no package named ${name}`);
    return { name, versions };
  }

  async version(org: OrgRef, name: string, version: number): Promise<StoredVersion> {
    const found = await this.repository.version(org, name, version);
    if (!found) throw new AppError('package_version_not_found', `package ${name} has no version ${version}`);
    return found;
  }

  /**
   * The version's plaintext, or `rangeHeader`'s part of it. The manifest and the first segment
   * are authenticated before this returns, so a damaged object answers an error status; damage
   * further in aborts the response at the failing segment.
   */
  async download(org: OrgRef, version: StoredVersion, rangeHeader: string | undefined): Promise<Download> {
    const range = parseRange(rangeHeader, version.size);
    const ref = { orgId: org.id, objectId: version.id };
    try {
      const dek = await this.kms.unwrap(orgKeyName(org.id), version.wrappedDek);
      const reader = await SealedObjectReader.open(this.storage, ref, dek, version.size);
      const segments = reader.read(range);
      const first = await segments.next();
      const logger = this.logger;
      async function* content() {
        if (first.done) return;
        yield first.value;
        try {
          yield* segments;
        } catch (error) {
          logger.error({ org: org.slug, version: version.id, err: (error as Error).message }, 'package content failed integrity check; response aborted');
          throw error;
        }
      }
      return { version, range, content: Readable.from(content(), { objectMode: false }) };
    } catch (error) {
      if (error instanceof ObjectIntegrityError) {
        this.logger.error({ org: org.slug, version: version.id, err: error.message }, 'package content failed integrity check');
        throw new AppError('package_integrity_failed', 'the stored package does not authenticate; nothing of it was sent');
      }
      throw error;
    }
  }

  async deleteVersion(org: OrgRef, name: string, version: number): Promise<PackageVersion> {
    const deleted = await this.repository.deleteVersion(org, name, version);
    if (!deleted) throw new AppError('package_version_not_found', `package ${name} has no version ${version}`);
    return deleted;
  }

  async deletePackage(org: OrgRef, name: string): Promise<{ name: string; versionsDeleted: number }> {
    const count = await this.repository.deletePackage(org, name);
    if (count === undefined) throw new AppError('package_not_found', `no package named ${name}`);
    return { name, versionsDeleted: count };
  }

  /**
   * Removes the objects of deleted versions and of uploads idle for PACKAGE_UPLOAD_STALE_SECONDS.
   * Idempotent: objects are listed by prefix, so chunks a crashed upload wrote are found too.
   */
  async sweep(org: OrgRef): Promise<number> {
    const staleBefore = new Date(Date.now() - this.config.PACKAGE_UPLOAD_STALE_SECONDS * 1000);
    let purged = 0;
    for (const candidate of await this.repository.sweepable(org, staleBefore, SWEEP_BATCH)) {
      if (candidate.state === 'uploading' && !(await this.repository.claimStaleUpload(org, candidate.id, staleBefore))) continue;
      const keys: string[] = [];
      for await (const key of this.storage.list(objectPrefix({ orgId: org.id, objectId: candidate.id }))) keys.push(key);
      await this.storage.delete(keys);
      await this.repository.markPurged(org, candidate.id);
      audit({ action: 'package.objects_purged', target: { id: candidate.id }, details: { objects: keys.length } });
      purged++;
    }
    return purged;
  }
}

function tooLarge(max: number): AppError {
  return new AppError('package_too_large', `packages are limited to ${max} bytes`);
}

/**
 * One `bytes=` range (RFC 9110 §14.1.2): `a-b`, `a-` or `-n`. A header that is not a single
 * byte range is ignored (the whole content is served); one that lies outside the content is 416.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (!header) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0) throw unsatisfiable(size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
    if (match[2] !== '' && Number(match[2]) < start) return undefined;
  }
  if (start >= size) throw unsatisfiable(size);
  return { start, end };
}

function unsatisfiable(size: number): AppError {
  return new AppError('range_not_satisfiable', 'the range lies outside the content', { size });
}
