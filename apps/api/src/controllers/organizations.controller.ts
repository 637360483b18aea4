import { Body, Controller, Get, HttpCode, Param, Post, Res } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { AuditAction, auditDetails } from '@coffer/audit';
import { ALL_ROLES, CurrentOrg, OrgAccess, PlatformAdminOnly } from '@coffer/auth';
import { ApiErrors, ApiJsonBody, ApiResult, ZodValidationPipe } from '@coffer/http';
import {
  CreateOrganizationBody,
  OrganizationAnswer,
  OrganizationCreatedAnswer,
  OrganizationPendingAnswer,
  OrganizationsAnswer,
  OrganizationStatusAnswer,
  OrgsService,
  presentOrgCreation,
} from '@coffer/orgs';
import { OrgRef, OrgRegistry, publicOrg } from '@coffer/tenancy';

@ApiTags('organizations')
@Controller('api/v1/organizations')
export class OrganizationsController {
  constructor(
    private readonly orgs: OrgsService,
    private readonly registry: OrgRegistry,
  ) {}

  /**
   * The provisioner creates the org's database; this waits for it up to ORG_PROVISION_WAIT_MS.
   * Longer, and the answer is 202 with the status URL: the org becomes active by itself, and
   * the same request, repeated once it is, adds the first admin (201).
   */
  @Post()
  @HttpCode(201)
  @PlatformAdminOnly()
  @AuditAction('organization.created')
  @ApiOperation({ summary: 'Create an organization (its own database), optionally with its first admin and API key' })
  @ApiResult(201, OrganizationCreatedAnswer, 'Created and active; with the first admin and their key (its secret shown only here) when asked')
  @ApiResult(202, OrganizationPendingAnswer, 'Still provisioning: poll statusUrl, then repeat the request to add the first admin')
  @ApiJsonBody(CreateOrganizationBody)
  @ApiErrors('forbidden', 'organization_exists', 'payload_too_large', 'invalid_json', 'kms_unavailable')
  async create(@Body() raw: unknown, @Res({ passthrough: true }) reply: FastifyReply) {
    // A creation refused by validation still names the slug it asked for (bounded; the audit
    // trail sanitizes what it cannot store).
    const slug = (raw as { slug?: unknown } | null)?.slug;
    if (typeof slug === 'string') auditDetails({ slug: slug.slice(0, 100) });
    const body = new ZodValidationPipe(CreateOrganizationBody).transform(raw);
    const created = presentOrgCreation(await this.orgs.create(body));
    if ('statusUrl' in created) reply.status(202).header('location', created.statusUrl);
    return created;
  }

  @Get(':org/status')
  @ApiResult(200, OrganizationStatusAnswer, 'the registration')
  @PlatformAdminOnly()
  @ApiOperation({ summary: "An organization's registration, whatever its status (provisioning or active)" })
  @ApiErrors('forbidden', 'organization_not_found')
  async status(@Param('org') slug: string) {
    return { organization: await this.orgs.status(slug) };
  }

  @Get()
  @ApiResult(200, OrganizationsAnswer, 'every organization')
  @PlatformAdminOnly()
  @ApiOperation({ summary: 'List organizations' })
  @ApiErrors('forbidden')
  async list() {
    return { organizations: (await this.registry.list()).map(publicOrg) };
  }

  @Get(':org')
  @ApiResult(200, OrganizationAnswer, 'the organization')
  @OrgAccess(ALL_ROLES, { platformAdmin: true })
  @ApiOperation({ summary: 'One organization' })
  @ApiErrors('organization_not_found')
  get(@CurrentOrg() org: OrgRef) {
    return { organization: publicOrg(org) };
  }
}
