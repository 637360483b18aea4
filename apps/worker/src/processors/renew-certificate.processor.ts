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
