import { Controller, Get, Headers, HttpCode, Param, Post, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { audit, AuditAction, setAuditOrg } from '@coffer/audit';
import { CurrentOrg, OrgAccess, Public } from '@coffer/auth';
import { ApiErrors } from '@coffer/http';
import { AssetLinksService, PackagesService } from '@coffer/packages';
import type { OrgRef } from '@coffer/tenancy';
import { rangeAware, sendContent } from './packages.controller';

@ApiTags('packages')
@Controller()
export class AssetLinksController {
  constructor(
    private readonly links: AssetLinksService,
    private readonly packages: PackagesService,
  ) {}

  /**
   * The token is the credential. Only a link that verifies is audited (to its org's chain);
   * anonymous failures are not, as for any request without valid credentials.
   */
  @Get('api/v1/assets/:token')
  @Public()
  @ApiOperation({ summary: 'Content through a signed link, no API key; `Range` as for the content route' })
  @ApiErrors('invalid_link', 'link_expired', 'link_revoked', 'package_version_not_found', 'range_not_satisfiable', 'package_integrity_failed')
  async asset(@Param('token') token: string, @Headers('range') range: string | undefined, @Res({ passthrough: true }) reply: FastifyReply) {
    const { org, version, linkId } = await this.links.resolve(token);
    setAuditOrg(org);
    audit({ action: 'package.content_read', target: { name: version.package, version: version.version, id: version.id }, via: { assetLink: linkId } });
    return sendContent(reply, await rangeAware(reply, version.size, () => this.packages.download(org, version, range)));
  }

  @Post('api/v1/organizations/:org/asset-links/revoke')
  @HttpCode(200)
  @OrgAccess(['admin'])
  @AuditAction('asset_links.revoked')
  @ApiOperation({ summary: 'Revokes every outstanding signed link of the organization' })
  @ApiErrors('forbidden', 'organization_not_found')
  async revokeAll(@CurrentOrg() org: OrgRef) {
    return { revokedKeys: await this.links.revokeAll(org) };
  }
}
