import type { ModuleRef } from '@nestjs/core';
import type { CertificateInfo } from './certificate';
import { CertificateService } from './certificate.service';

/** The certificate the API serves, for reports (metrics, encryption status); none with TLS_MODE=off. */
export function servedCertificate(moduleRef: ModuleRef): CertificateInfo | undefined {
  try {
    return moduleRef.get(CertificateService, { strict: false }).current;
  } catch {
    return undefined; // TLS_MODE=off: the TLS module provides no certificate service
  }
}
