import { Controller, Get, HttpCode, Post } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuditAction } from '@coffer/audit';
import { CurrentOrg, OrgAccess } from '@coffer/auth';
import { ApiErrors, ApiResult } from '@coffer/http';
import { KeyRotationAnswer, KeyRotationService, OrgKeyView } from '@coffer/keys';
import type { OrgRef } from '@coffer/tenancy';

/** The org's KMS key: its versions, what they still wrap, and rotation on demand. */
@ApiTags('keys')
@Controller('api/v1/organizations/:org/keys')
export class KeysController {
  constructor(private readonly keys: KeyRotationService) {}

  @Get()
  @ApiResult(200, OrgKeyView, "the org's key")
  @OrgAccess(['admin', 'security_officer'])
  @ApiOperation({ summary: "The org key's versions, creation times, stored data keys per version and rewrap progress" })
  @ApiErrors('forbidden', 'organization_not_found', 'kms_unavailable')
  describe(@CurrentOrg() org: OrgRef) {
    return this.keys.describe(org);
  }

  @Post('rotate')
  @ApiResult(200, KeyRotationAnswer, 'the new version')
  @HttpCode(200)
  @OrgAccess(['admin', 'security_officer'])
  @AuditAction('kms.key.rotation_requested')
  @ApiOperation({ summary: 'Adds a key version now; new writes use it and a background job rewraps the stored data keys' })
  @ApiErrors('forbidden', 'organization_not_found', 'kms_unavailable')
  async rotate(@CurrentOrg() org: OrgRef) {
    return (await this.keys.rotate(org, 'manual'))!;
  }
}
