import { Injectable } from '@nestjs/common';
import { JobPayloads, JobProcessor, Processes } from '@coffer/jobs';
import { CertificateRenewalService } from '@coffer/tls';

@Injectable()
@Processes('renew-certificate')
export class RenewCertificateProcessor implements JobProcessor<'renew-certificate'> {
  constructor(private readonly renewal: CertificateRenewalService) {}

  async process({ certificateId, force }: JobPayloads['renew-certificate']) {
    return { outcome: await this.renewal.renew(certificateId, force ?? false) };
  }
}

/**
 * Registers the configured certificate, finds those due for renewal (or for their next attempt
 * after a failure) in PostgreSQL and enqueues one job each, with the certificate's fixed job id.
 */
@Injectable()
@Processes('find-certificate-renewals')
export class FindCertificateRenewalsProcessor implements JobProcessor<'find-certificate-renewals'> {
  constructor(private readonly renewal: CertificateRenewalService) {}

  async process() {
    return { due: await this.renewal.enqueueDue() };
  }
}
