import type { TLSSocket } from 'node:tls';
import { Controller, Get, Req } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { AuditRead } from '@coffer/audit';
import { CurrentOrg, OrgAccess } from '@coffer/auth';
import { EncryptionStatusAnswer, EncryptionStatusService, transitOf } from '@coffer/encryption';
import { ApiErrors, ApiResult } from '@coffer/http';
import type { OrgRef } from '@coffer/tenancy';

@ApiTags('encryption')
@Controller('api/v1/organizations/:org/encryption-status')
export class EncryptionStatusController {
  constructor(private readonly status: EncryptionStatusService) {}

  @Get()
  @ApiResult(200, EncryptionStatusAnswer, 'the measured status')
  @OrgAccess(['admin', 'security_officer'])
  @AuditRead('encryption_status.read')
  @ApiOperation({ summary: "The org's encryption at rest and in transit, measured from live state (storage_encryption, transit_encryption, key_rotation, db_encryption, plus details)" })
  @ApiErrors('forbidden', 'organization_not_found')
  get(@CurrentOrg() org: OrgRef, @Req() request: FastifyRequest) {
    const socket = request.raw.socket as Partial<TLSSocket>;
    return this.status.status(org, transitOf(socket.encrypted ? socket.getProtocol?.() : undefined));
  }
}
