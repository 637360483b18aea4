import { Readable } from 'node:stream';
import { Body, Controller, Delete, Get, Headers, HttpCode, Put, Query, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import {
  AuditAction,
  AuditChain,
  AuditDeliveryService,
  AuditDestinationView,
  AuditEntryView,
  AuditKeysAnswer,
  AuditDestinationBody,
  AuditDestinationInput,
  AuditKeysFilter,
  AuditKeysQuery,
  AuditLogFilters,
  AuditLogQuery,
  AuditPageAnswer,
  AuditRead,
  AuditService,
  AuditVerifyAnswer,
  publicEntry,
} from '@coffer/audit';
import { CurrentOrg, OrgAccess, PlatformAdminOnly, Public } from '@coffer/auth';
import { ApiErrors, ApiJsonBody, ApiJsonOrNdjson, ApiJsonQuery, ApiNoContent, ApiResult, ZodValidationPipe } from '@coffer/http';
import type { OrgRef } from '@coffer/tenancy';

const NDJSON = 'application/x-ndjson';
const EXPORT_PAGE = 500;

/** An org's audit trail for its security officers and admins; the control plane's for the platform admin. */
@ApiTags('audit')
@Controller()
export class AuditLogsController {
  constructor(
    private readonly audit: AuditService,
    private readonly delivery: AuditDeliveryService,
  ) {}

  @Get('api/v1/organizations/:org/audit-logs')
  @ApiJsonQuery(AuditLogQuery)
  @ApiJsonOrNdjson(AuditPageAnswer, AuditEntryView, 'a page of entries, newest first (JSON), or every match (NDJSON)')
  @OrgAccess(['admin', 'security_officer'])
  @AuditRead('audit_log.read')
  @ApiOperation({ summary: 'Audit entries, newest first; `Accept: application/x-ndjson` streams every match' })
  @ApiErrors('forbidden', 'organization_not_found')
  list(
    @CurrentOrg() org: OrgRef,
    @Query(new ZodValidationPipe(AuditLogQuery)) query: AuditLogFilters,
    @Headers('accept') accept: string | undefined,
    @Res({ passthrough: true }) reply: FastifyReply,
  ) {
    return this.page(this.audit.chain(org), query, accept, reply);
  }

  @Get('api/v1/organizations/:org/audit-logs/verify')
  @ApiResult(200, AuditVerifyAnswer, 'whether the chain is intact; where it breaks if not')
  @OrgAccess(['admin', 'security_officer'])
  @AuditRead('audit_log.verified')
  @ApiOperation({ summary: "Checks the org's hash chain and signed checkpoints; names the first bad sequence number" })
  @ApiErrors('forbidden', 'organization_not_found')
  verify(@CurrentOrg() org: OrgRef) {
    return this.audit.verify(this.audit.chain(org));
  }

  /**
   * Public: these are public keys, and whoever holds a copy of the log (an export, the bucket)
   * must be able to check it without an account. The answer is a few hundred bytes per key
   * version; a chain id that has no key yet answers an empty list.
   */
  @Get('api/v1/audit/keys')
  @ApiJsonQuery(AuditKeysQuery)
  @ApiResult(200, AuditKeysAnswer, "the chain's public keys, every version (none before its first checkpoint)")
  @Public()
  @ApiOperation({ summary: "Every version of a chain's ed25519 public key, for checking its checkpoints and digests offline (docs/audit-verification.md)" })
  @ApiErrors('validation_failed', 'kms_unavailable')
  async keys(@Query(new ZodValidationPipe(AuditKeysQuery)) query: AuditKeysFilter) {
    return { chain: query.chain, algorithm: 'ed25519', keys: await this.audit.publicKeys(query.chain) };
  }

  @Put('api/v1/organizations/:org/audit-logs/destination')
  @ApiNoContent('configured: delivery starts with the next batch')
  @HttpCode(204)
  @OrgAccess(['admin', 'security_officer'])
  @AuditAction('audit_destination.configured')
  @ApiOperation({ summary: "Ships the org's audit log to its own S3 bucket; the credentials are stored sealed" })
  @ApiJsonBody(AuditDestinationBody)
  @ApiErrors('forbidden', 'organization_not_found', 'destination_not_allowed', 'audit_destination_unreachable')
  async configureDestination(@CurrentOrg() org: OrgRef, @Body(new ZodValidationPipe(AuditDestinationBody)) body: AuditDestinationInput) {
    await this.delivery.configure(org, body);
  }

  @Get('api/v1/organizations/:org/audit-logs/destination')
  @ApiResult(200, AuditDestinationView, 'the destination and the delivery progress')
  @OrgAccess(['admin', 'security_officer'])
  @ApiOperation({ summary: 'Where the audit log is delivered and how far delivery has got (never the credentials)' })
  @ApiErrors('forbidden', 'organization_not_found', 'audit_destination_not_found')
  describeDestination(@CurrentOrg() org: OrgRef) {
    return this.delivery.describe(org);
  }

  @Delete('api/v1/organizations/:org/audit-logs/destination')
  @ApiNoContent('removed')
  @HttpCode(204)
  @OrgAccess(['admin', 'security_officer'])
  @AuditAction('audit_destination.removed')
  @ApiOperation({ summary: 'Stops delivery; what was delivered stays in the bucket' })
  @ApiErrors('forbidden', 'organization_not_found', 'audit_destination_not_found')
  async removeDestination(@CurrentOrg() org: OrgRef) {
    await this.delivery.remove(org);
  }

  @Get('api/v1/admin/audit-logs')
  @ApiJsonQuery(AuditLogQuery)
  @ApiJsonOrNdjson(AuditPageAnswer, AuditEntryView, 'a page of entries, newest first (JSON), or every match (NDJSON)')
  @PlatformAdminOnly()
  @AuditRead('audit_log.read')
  @ApiOperation({ summary: "The control plane's audit entries (organizations, platform admin), newest first" })
  @ApiErrors('forbidden')
  listControl(
    @Query(new ZodValidationPipe(AuditLogQuery)) query: AuditLogFilters,
    @Headers('accept') accept: string | undefined,
    @Res({ passthrough: true }) reply: FastifyReply,
  ) {
    return this.page(this.audit.chain(undefined), query, accept, reply);
  }

  @Get('api/v1/admin/audit-logs/verify')
  @ApiResult(200, AuditVerifyAnswer, 'whether the chain is intact; where it breaks if not')
  @PlatformAdminOnly()
  @AuditRead('audit_log.verified')
  @ApiOperation({ summary: "Checks the control plane's hash chain" })
  @ApiErrors('forbidden')
  verifyControl() {
    return this.audit.verify(this.audit.chain(undefined));
  }

  private async page(chain: AuditChain, query: AuditLogFilters, accept: string | undefined, reply: FastifyReply) {
    const filters = { ...query, before: query.cursor };
    if (accept?.includes(NDJSON)) {
      void reply.header('content-type', `${NDJSON}; charset=utf-8`);
      return Readable.from(this.exportLines(chain, filters));
    }
    const entries = await this.audit.list(chain, filters);
    const last = entries[entries.length - 1];
    return {
      entries: entries.map(publicEntry),
      nextCursor: entries.length === query.limit && last ? String(last.seq) : null,
    };
  }

  private async *exportLines(chain: AuditChain, filters: Parameters<AuditService['list']>[1]) {
    let before = filters.before;
    for (;;) {
      const entries = await this.audit.list(chain, { ...filters, before, limit: EXPORT_PAGE });
      for (const entry of entries) yield `${JSON.stringify(publicEntry(entry))}\n`;
      if (entries.length < EXPORT_PAGE) return;
      before = entries[entries.length - 1].seq;
    }
  }
}
