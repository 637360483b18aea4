import { Controller, Get, Headers, HttpCode, Param, Post, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { audit, AuditAction, setAuditOrg } from '@coffer/audit';
import { AbuseLimit, CurrentOrg, OrgAccess, Public } from '@coffer/auth';
import { ApiDownload, ApiErrors, ApiResult } from '@coffer/http';
import { AssetLinksService, PackagesService, RevokedLinkAnswer, RevokedLinksAnswer } from '@coffer/packages';
import type { OrgRef } from '@coffer/tenancy';
import { rangeAware, rangeIf, sendContent } from './packages.controller';

@ApiTags('packages')
@Controller()
export class AssetLinksController {
  constructor(
    private readonly links: AssetLinksService,
    private readonly packages: PackagesService,
  ) {}

  /**
   * The token is the credential. Only a link that verifies is audited (to its org's chain);
   * anonymous failures are not, as for any request without valid credentials. Every request
   * counts against its client address's limit (RATE_LIMIT_ASSET_LINKS_PER_IP): each check costs
   * lookups.
   */
  @Get('api/v1/assets/:token')
  @ApiDownload()
  @Public()
  @AbuseLimit('asset_links')
  @ApiOperation({ summary: 'Content through a signed link, no API key; `Range` as for the content route' })
  @ApiErrors('invalid_link', 'link_expired', 'link_revoked', 'package_version_not_found', 'range_not_satisfiable', 'package_integrity_failed', 'asset_link_rate_limited', 'database_busy', 'kms_unavailable')
  async asset(
    @Param('token') token: string,
    @Headers('range') range: string | undefined,
    @Headers('if-range') ifRange: string | undefined,
    @Res({ passthrough: true }) reply: FastifyReply,
  ) {
    const { org, version, linkId } = await this.links.resolve(token);
    setAuditOrg(org);
    audit({ action: 'package.content_read', target: { name: version.package, version: version.version, id: version.id }, via: { assetLink: linkId } });
    return sendContent(reply, await rangeAware(reply, version.size, () => this.packages.download(org, version, rangeIf(range, ifRange, version))));
  }

  @Post('api/v1/organizations/:org/asset-links/:linkId/revoke')
  @ApiResult(200, RevokedLinkAnswer, 'the link, revoked: it answers link_revoked from now on')
  @HttpCode(200)
  @OrgAccess(['admin'])
  @AuditAction('asset_link.revoked')
  @ApiOperation({ summary: 'Revokes one signed link, by the id its creation answered' })
  @ApiErrors('forbidden', 'organization_not_found')
  async revokeOne(@CurrentOrg() org: OrgRef, @Param('linkId') linkId: string) {
    await this.links.revoke(org, linkId);
    return { revoked: linkId };
  }

  @Post('api/v1/organizations/:org/asset-links/revoke')
  @HttpCode(200)
  @OrgAccess(['admin'])
  @AuditAction('asset_links.revoked')
  @ApiOperation({ summary: 'Revokes every outstanding signed link of the organization' })
  @ApiResult(200, RevokedLinksAnswer, 'how many link keys were revoked; every link they signed now answers link_revoked')
  @ApiErrors('forbidden', 'organization_not_found')
  async revokeAll(@CurrentOrg() org: OrgRef) {
    return { revokedKeys: await this.links.revokeAll(org) };
  }
}
