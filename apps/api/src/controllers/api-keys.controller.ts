import { Controller, Delete, Get, Param } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuditAction } from '@coffer/audit';
import { CurrentOrg, OrgAccess } from '@coffer/auth';
import { ApiErrors } from '@coffer/http';
import { ApiKeysService } from '@coffer/users';
import type { OrgRef } from '@coffer/tenancy';

@ApiTags('api-keys')
@Controller('api/v1/organizations/:org/api-keys')
export class ApiKeysController {
  constructor(private readonly apiKeys: ApiKeysService) {}

  @Get()
  @OrgAccess(['admin', 'security_officer'], { platformAdmin: true })
  @ApiOperation({ summary: "List the organization's API keys (never their secrets)" })
  @ApiErrors('forbidden', 'organization_not_found')
  async list(@CurrentOrg() org: OrgRef) {
    return { apiKeys: await this.apiKeys.list(org) };
  }

  @Delete(':keyId')
  @OrgAccess(['admin'], { platformAdmin: true })
  @AuditAction('api_key.revoked')
  @ApiOperation({ summary: 'Revoke an API key; it fails authentication from the next request on' })
  @ApiErrors('forbidden', 'organization_not_found', 'api_key_not_found')
  async revoke(@CurrentOrg() org: OrgRef, @Param('keyId') keyId: string) {
    return { apiKey: await this.apiKeys.revoke(org, keyId) };
  }
}
