import { Body, Controller, Get, HttpCode, Param, Post } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuditAction, AuditRead } from '@coffer/audit';
import { CurrentOrg, CurrentPrincipal, OrgAccess } from '@coffer/auth';
import { ApiErrors, ApiJsonBody, ApiResult, AppError, ZodValidationPipe } from '@coffer/http';
import { ApiKeysService, CreateApiKeyBody, CreateUserBody, IssuedApiKeyAnswer, UserAnswer, UsersAnswer, UsersService } from '@coffer/users';
import { OrgRef, Principal } from '@coffer/tenancy';

@ApiTags('users')
@Controller('api/v1/organizations/:org/users')
export class UsersController {
  constructor(
    private readonly users: UsersService,
    private readonly apiKeys: ApiKeysService,
  ) {}

  @Post()
  @ApiResult(201, UserAnswer, 'the new user')
  @HttpCode(201)
  @OrgAccess(['admin'], { platformAdmin: true })
  @AuditAction('user.created')
  @ApiOperation({ summary: 'Add a user to the organization' })
  @ApiJsonBody(CreateUserBody)
  @ApiErrors('forbidden', 'organization_not_found', 'user_email_taken')
  async create(@CurrentOrg() org: OrgRef, @Body(new ZodValidationPipe(CreateUserBody)) body: CreateUserBody) {
    return { user: await this.users.create(org, body) };
  }

  @Get()
  @ApiResult(200, UsersAnswer, 'the users')
  @OrgAccess(['admin', 'security_officer'], { platformAdmin: true })
  @AuditRead('users.listed')
  @ApiOperation({ summary: 'List the users of the organization' })
  @ApiErrors('forbidden', 'organization_not_found')
  async list(@CurrentOrg() org: OrgRef) {
    return { users: await this.users.list(org) };
  }

  @Get(':userId')
  @ApiResult(200, UserAnswer, 'the user')
  @OrgAccess(['admin', 'security_officer'], { platformAdmin: true })
  @AuditRead('user.viewed')
  @ApiOperation({ summary: 'One user' })
  @ApiErrors('forbidden', 'organization_not_found', 'user_not_found')
  async get(@CurrentOrg() org: OrgRef, @Param('userId') userId: string) {
    return { user: await this.users.get(org, userId) };
  }

  @Post(':userId/disable')
  @ApiResult(200, UserAnswer, 'the user, disabled')
  @HttpCode(200)
  @OrgAccess(['admin'], { platformAdmin: true })
  @AuditAction('user.disabled')
  @ApiOperation({ summary: "Disable a user; every key of theirs stops working at once (not the org's last active admin)" })
  @ApiErrors('forbidden', 'organization_not_found', 'user_not_found', 'last_admin')
  async disable(@CurrentOrg() org: OrgRef, @Param('userId') userId: string) {
    return { user: await this.users.disable(org, userId) };
  }

  @Post(':userId/enable')
  @ApiResult(200, UserAnswer, 'the user, enabled')
  @HttpCode(200)
  @OrgAccess(['admin'], { platformAdmin: true })
  @AuditAction('user.enabled')
  @ApiOperation({ summary: 'Re-enable a disabled user; their keys that are neither revoked nor expired work again' })
  @ApiErrors('forbidden', 'organization_not_found', 'user_not_found')
  async enable(@CurrentOrg() org: OrgRef, @Param('userId') userId: string) {
    return { user: await this.users.enable(org, userId) };
  }

  /**
   * Admins issue keys to anyone in the org; any user may issue keys to themselves. The platform
   * admin never does (impersonation_refused, audited): a key would let it act as that user. It
   * gets an org's first admin's key only from creating the org (POST /organizations).
   */
  @Post(':userId/api-keys')
  @ApiResult(201, IssuedApiKeyAnswer, 'the key, with its secret (shown only here)')
  @HttpCode(201)
  @OrgAccess(['admin', 'security_officer', 'member'], { platformAdmin: true })
  @AuditAction('api_key.created')
  @ApiOperation({ summary: 'Issue an API key to a user; the secret is shown only in this response' })
  @ApiJsonBody(CreateApiKeyBody)
  @ApiErrors('forbidden', 'impersonation_refused', 'organization_not_found', 'user_not_found', 'user_disabled')
  async issueKey(
    @CurrentOrg() org: OrgRef,
    @CurrentPrincipal() principal: Principal,
    @Param('userId') userId: string,
    @Body(new ZodValidationPipe(CreateApiKeyBody)) body: CreateApiKeyBody,
  ) {
    if (principal.kind === 'platform_admin') {
      throw new AppError('impersonation_refused', "the platform admin may not issue keys to an organization's users");
    }
    if (principal.kind === 'user' && principal.role !== 'admin' && principal.userId !== userId) {
      throw new AppError('forbidden', 'only an admin may issue keys to other users');
    }
    return this.apiKeys.issue(org, userId, { name: body.name, expiresAt: body.expiresAt ?? null });
  }
}
