import { Body, Controller, Delete, Get, Headers, HttpCode, Param, Post, Put, Req, Res } from '@nestjs/common';
import { RouteConfig } from '@nestjs/platform-fastify';
import { ApiBody, ApiConsumes, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AuditAction, AuditRead } from '@coffer/audit';
import { AbuseLimit, ALL_ROLES, CurrentOrg, CurrentPrincipal, OrgAccess } from '@coffer/auth';
import {
  ApiDownload,
  ApiErrors,
  ApiJsonBody,
  ApiResult,
  AppError,
  canonicalPositiveInteger,
  MediaType,
  STREAM_BODY,
  streamedBody,
  ZodValidationPipe,
} from '@coffer/http';
import {
  AssetLinkAnswer,
  AssetLinksService,
  CreateLinkBody,
  DeletedPackageAnswer,
  DeletedVersionAnswer,
  Download,
  PackageAnswer,
  PackageName,
  PackagesAnswer,
  PackagesService,
  PackageVersionView,
  QueuedVersionView,
} from '@coffer/packages';
import { OrgRef, Principal, actorId } from '@coffer/tenancy';

/** `versions/:version`: `2`, never `02`, `2.0`, `1e0`, `0x2` or ` 2` (the request and its audit entry name the same version). */
const VersionNumber = canonicalPositiveInteger();

/** An upload's Content-Type is stored and sent back on every download: a media type, bounded. */
const UploadHeaders = z.object({ 'content-type': MediaType.optional() });

/**
 * KB packages. Every role reads; admins and members upload; only admins delete (a deletion
 * cannot be undone once the sweep has removed the objects). Downloads are audited reads.
 * Signed links hand content to whoever holds them, so only uploaders and admins make them.
 */
@ApiTags('packages')
@Controller('api/v1/organizations/:org/packages')
export class PackagesController {
  constructor(
    private readonly packages: PackagesService,
    private readonly links: AssetLinksService,
  ) {}

  @Put(':name')
  @HttpCode(201)
  @RouteConfig(STREAM_BODY)
  @OrgAccess(['admin', 'member'])
  @AbuseLimit('uploads')
  @AuditAction('package.version_created')
  @ApiOperation({
    summary:
      'Upload a new version (the raw body, Content-Length or chunked; its Content-Type, a media type of at most 255 ' +
      'characters, is kept for downloads); answers its metadata. While the KMS is ' +
      'unavailable the content is stored and the version queued: 202 with `{pendingWriteId, status}` (poll ' +
      '`GET .../pending-writes/:id`); it appears once the worker has flushed it.',
  })
  @ApiConsumes('*/*')
  @ApiBody({ schema: { type: 'string', format: 'binary' } })
  @ApiResult(201, PackageVersionView, 'the new version, committed and visible')
  @ApiResult(202, QueuedVersionView, 'KMS unavailable: stored and queued, invisible until the worker flushes it')
  @ApiErrors('forbidden', 'organization_not_found', 'package_too_large', 'bad_request', 'kms_unavailable', 'concurrent_uploads_exceeded')
  async upload(
    @CurrentOrg() org: OrgRef,
    @CurrentPrincipal() principal: Principal,
    @Param('name', new ZodValidationPipe(PackageName)) name: string,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ) {
    const length = request.headers['content-length'];
    const { 'content-type': contentType } = new ZodValidationPipe(UploadHeaders).transform({ 'content-type': request.streamContentType });
    const stored = await this.packages.upload(org, {
      name,
      createdBy: actorId(principal),
      contentType,
      declaredLength: length === undefined ? undefined : Number(length),
      body: streamedBody(request),
    });
    if ('pendingWriteId' in stored) void reply.status(202);
    return stored;
  }

  @Get()
  @ApiResult(200, PackagesAnswer, "the org's packages")
  @OrgAccess(ALL_ROLES)
  @ApiOperation({ summary: "The org's packages with their latest version" })
  @ApiErrors('forbidden', 'organization_not_found')
  async list(@CurrentOrg() org: OrgRef) {
    return { packages: await this.packages.list(org) };
  }

  @Get(':name')
  @ApiResult(200, PackageAnswer, 'the package and its versions')
  @OrgAccess(ALL_ROLES)
  @ApiOperation({ summary: 'A package and its versions (size, SHA-256, content type, creator, KMS key version)' })
  @ApiErrors('forbidden', 'organization_not_found', 'package_not_found')
  describe(@CurrentOrg() org: OrgRef, @Param('name', new ZodValidationPipe(PackageName)) name: string) {
    return this.packages.describe(org, name);
  }

  @Get(':name/versions/:version/content')
  @ApiDownload()
  @OrgAccess(ALL_ROLES)
  @AuditRead('package.content_read')
  @ApiOperation({ summary: 'The decrypted content, streamed; one `Range: bytes=` range answers 206' })
  @ApiErrors('forbidden', 'organization_not_found', 'package_version_not_found', 'range_not_satisfiable', 'package_integrity_failed')
  async content(
    @CurrentOrg() org: OrgRef,
    @Param('name', new ZodValidationPipe(PackageName)) name: string,
    @Param('version', new ZodValidationPipe(VersionNumber)) version: number,
    @Headers('range') range: string | undefined,
    @Headers('if-range') ifRange: string | undefined,
    @Res({ passthrough: true }) reply: FastifyReply,
  ) {
    const stored = await this.packages.version(org, name, version);
    return sendContent(reply, await rangeAware(reply, stored.size, () => this.packages.download(org, stored, rangeIf(range, ifRange, stored))));
  }

  @Post(':name/versions/:version/links')
  @ApiResult(201, AssetLinkAnswer, 'the link')
  @HttpCode(201)
  @OrgAccess(['admin', 'member'])
  @AuditAction('package.link_created')
  @ApiOperation({ summary: 'A signed link to the content, usable without an API key until it expires (default 15 minutes)' })
  @ApiJsonBody(CreateLinkBody)
  @ApiErrors('forbidden', 'organization_not_found', 'package_version_not_found')
  async createLink(
    @CurrentOrg() org: OrgRef,
    @Param('name', new ZodValidationPipe(PackageName)) name: string,
    @Param('version', new ZodValidationPipe(VersionNumber)) version: number,
    @Body(new ZodValidationPipe(CreateLinkBody)) body: CreateLinkBody,
    @CurrentPrincipal() principal: Principal,
  ) {
    // Only org users reach here (OrgAccess without the platform admin): the link dies with their access.
    const creator = principal as Extract<Principal, { kind: 'user' }>;
    return this.links.create(org, await this.packages.version(org, name, version), body.ttlSeconds, creator);
  }

  @Delete(':name/versions/:version')
  @ApiResult(200, DeletedVersionAnswer, 'the deleted version')
  @OrgAccess(['admin'])
  @AuditAction('package.version_deleted')
  @ApiOperation({ summary: 'Delete a version; its objects are removed by the worker' })
  @ApiErrors('forbidden', 'organization_not_found', 'package_version_not_found')
  async deleteVersion(
    @CurrentOrg() org: OrgRef,
    @Param('name', new ZodValidationPipe(PackageName)) name: string,
    @Param('version', new ZodValidationPipe(VersionNumber)) version: number,
  ) {
    return { version: await this.packages.deleteVersion(org, name, version) };
  }

  @Delete(':name')
  @ApiResult(200, DeletedPackageAnswer, 'the deleted package')
  @OrgAccess(['admin'])
  @AuditAction('package.deleted')
  @ApiOperation({ summary: 'Delete a package and all its versions; the name starts again at version 1' })
  @ApiErrors('forbidden', 'organization_not_found', 'package_not_found')
  deletePackage(@CurrentOrg() org: OrgRef, @Param('name', new ZodValidationPipe(PackageName)) name: string) {
    return this.packages.deletePackage(org, name);
  }
}

/**
 * The Range to serve given If-Range (RFC 9110 §13.1.5): only while the client's validator is our
 * strong ETag; a weak or different one, or a date (we send no Last-Modified), means the content
 * the client holds is not this one, so the whole content is sent (200).
 */
export function rangeIf(range: string | undefined, ifRange: string | undefined, version: { sha256: string }): string | undefined {
  return ifRange === undefined || ifRange.trim() === `"${version.sha256}"` ? range : undefined;
}

/** A 416 says how long the content is (RFC 9110 §15.5.17). */
export async function rangeAware(reply: FastifyReply, size: number, download: () => Promise<Download>): Promise<Download> {
  try {
    return await download();
  } catch (error) {
    if (error instanceof AppError && error.code === 'range_not_satisfiable') void reply.header('content-range', `bytes */${size}`);
    throw error;
  }
}

/** Headers of a download: never rendered by a browser in the API's origin. */
export function sendContent(reply: FastifyReply, { version, range, content }: Download) {
  void reply
    .header('content-type', version.contentType)
    .header('x-content-type-options', 'nosniff')
    .header('content-disposition', 'attachment')
    // Decrypted content: no browser or proxy cache may keep it, nor outlive a link's expiry.
    .header('cache-control', 'no-store')
    .header('accept-ranges', 'bytes')
    .header('etag', `"${version.sha256}"`);
  if (range) {
    void reply.status(206).header('content-range', `bytes ${range.start}-${range.end}/${version.size}`).header('content-length', range.end - range.start + 1);
  } else {
    void reply.header('content-length', version.size);
  }
  return content;
}
