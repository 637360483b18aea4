import { Controller, Get, Param } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { CurrentOrg, OrgAccess } from '@coffer/auth';
import { ApiErrors, ApiResult } from '@coffer/http';
import { PackagesService, PendingWriteAnswer } from '@coffer/packages';
import type { OrgRef } from '@coffer/tenancy';

/** Writes accepted (202) while the KMS was unavailable, polled by whoever may make them. */
@ApiTags('packages')
@Controller('api/v1/organizations/:org/pending-writes')
export class PendingWritesController {
  constructor(private readonly packages: PackagesService) {}

  @Get(':id')
  @ApiResult(200, PendingWriteAnswer, 'the queued write')
  @OrgAccess(['admin', 'member'])
  @ApiOperation({ summary: 'A queued write: pending, flushed (with its version number) or failed' })
  @ApiErrors('forbidden', 'organization_not_found', 'pending_write_not_found')
  status(@CurrentOrg() org: OrgRef, @Param('id') id: string) {
    return this.packages.pendingWrite(org, id);
  }
}
