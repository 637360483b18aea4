import { Controller, Get, HttpCode, Param, Post } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuditAction } from '@coffer/audit';
import { PlatformAdminOnly } from '@coffer/auth';
import { ApiErrors, ApiResult } from '@coffer/http';
import { CertificateRenewalService, CertificatesAnswer, RenewalRequestedAnswer } from '@coffer/tls';

/** The installation's TLS certificates, for the platform admin. */
@ApiTags('certificates')
@Controller('api/v1/admin/certificates')
export class CertificatesController {
  constructor(private readonly renewal: CertificateRenewalService) {}

  @Get()
  @ApiResult(200, CertificatesAnswer, 'the certificates in service')
  @PlatformAdminOnly()
  @ApiOperation({ summary: 'Certificates in service: names, source, issuer, serial, validity, next renewal, last attempt and error' })
  @ApiErrors('forbidden')
  async list() {
    return { certificates: await this.renewal.list() };
  }

  @Post(':id/renew')
  @ApiResult(202, RenewalRequestedAnswer, 'renewal queued')
  @HttpCode(202)
  @PlatformAdminOnly()
  @AuditAction('certificate.renewal_requested')
  @ApiOperation({ summary: 'Renews the certificate now, whatever its due date (a worker job; poll the list for the result)' })
  @ApiErrors('forbidden', 'certificate_not_found')
  renew(@Param('id') id: string) {
    return this.renewal.requestRenewal(id);
  }
}
