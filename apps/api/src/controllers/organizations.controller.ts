import { Body, Controller, Get, HttpCode, Post } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuditAction } from '@coffer/audit';
import { ALL_ROLES, CurrentOrg, OrgAccess, PlatformAdminOnly } from '@coffer/auth';
import { ApiErrors, ApiJsonBody, ZodValidationPipe } from '@coffer/http';
import { CreateOrganizationBody, OrgsService } from '@coffer/orgs';
import { OrgRef, OrgRegistry, publicOrg } from '@coffer/tenancy';

@ApiTags('organizations')
@Controller('api/v1/organizations')
export class OrganizationsController {
  constructor(
    private readonly orgs: OrgsService,
    private readonly registry: OrgRegistry,
  ) {}

  @Post()
  @HttpCode(201)
  @PlatformAdminOnly()
  @AuditAction('organization.created')
  @ApiOperation({ summary: 'Create an organization (its own database), optionally with its first admin and API key' })
  @ApiJsonBody(CreateOrganizationBody)
  @ApiErrors('forbidden', 'organization_exists', 'payload_too_large', 'invalid_json')
  async create(@Body(new ZodValidationPipe(CreateOrganizationBody)) body: CreateOrganizationBody) {
    const { organization, admin } = await this.orgs.create(body);
    return {
      organization: publicOrg(organization),
      ...(admin && { admin: { user: admin.user, apiKey: { ...admin.apiKey, secret: admin.secret } } }),
    };
  }

  @Get()
  @PlatformAdminOnly()
  @ApiOperation({ summary: 'List organizations' })
  @ApiErrors('forbidden')
  async list() {
    return { organizations: (await this.registry.list()).map(publicOrg) };
  }

  @Get(':org')
  @OrgAccess(ALL_ROLES, { platformAdmin: true })
  @ApiOperation({ summary: 'One organization' })
  @ApiErrors('organization_not_found')
  get(@CurrentOrg() org: OrgRef) {
    return { organization: publicOrg(org) };
  }
}
