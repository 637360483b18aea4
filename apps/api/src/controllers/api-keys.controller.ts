import { Controller, Delete, Get, Param } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuditAction } from '@coffer/audit';
import { CurrentOrg, CurrentPrincipal, OrgAccess } from '@coffer/auth';
import { ApiErrors, ApiResult } from '@coffer/http';
import { ApiKeyAnswer, ApiKeysAnswer, ApiKeysService } from '@coffer/users';
import type { OrgRef, Principal } from '@coffer/tenancy';

@ApiTags('api-keys')
@Controller('api/v1/organizations/:org/api-keys')
export class ApiKeysController {
  constructor(private readonly apiKeys: ApiKeysService) {}

  /** Admins and security officers see every key; a member sees their own (they may issue them). */
  @Get()
  @ApiResult(200, ApiKeysAnswer, 'the API keys (a member: their own), whatever their status')
  @OrgAccess(['admin', 'security_officer', 'member'], { platformAdmin: true })
  @ApiOperation({ summary: "List the organization's API keys (a member: their own), never their secrets" })
  @ApiErrors('forbidden', 'organization_not_found')
  async list(@CurrentOrg() org: OrgRef, @CurrentPrincipal() principal: Principal) {
    return { apiKeys: await this.apiKeys.list(org, ownKeysOnly(principal)) };
  }

  /** Admins revoke any key; anyone else their own (another's answers api_key_not_found). */
  @Delete(':keyId')
  @ApiResult(200, ApiKeyAnswer, 'the key, revoked')
  @OrgAccess(['admin', 'security_officer', 'member'], { platformAdmin: true })
  @AuditAction('api_key.revoked')
  @ApiOperation({ summary: 'Revoke an API key (a non-admin: their own); it fails authentication from the next request on' })
  @ApiErrors('forbidden', 'organization_not_found', 'api_key_not_found')
  async revoke(@CurrentOrg() org: OrgRef, @CurrentPrincipal() principal: Principal, @Param('keyId') keyId: string) {
    const own = principal.kind === 'user' && principal.role !== 'admin' ? principal.userId : undefined;
    return { apiKey: await this.apiKeys.revoke(org, keyId, own) };
  }
}

/** A member lists only their own keys; admins, security officers and the platform admin all. */
function ownKeysOnly(principal: Principal): string | undefined {
  return principal.kind === 'user' && principal.role === 'member' ? principal.userId : undefined;
}
