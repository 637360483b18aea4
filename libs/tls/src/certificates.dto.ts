import { z } from 'zod';
import { Instant } from '@coffer/http';

/** A certificate in service, as CertificateRenewalService.list shows it. */
export const CertificateView = z.strictObject({
  id: z.string(),
  domains: z.array(z.string()),
  source: z.enum(['acme', 'internal-ca', 'files']),
  issuer: z.string().nullable(),
  serial: z.string().nullable(),
  notBefore: Instant.nullable(),
  notAfter: Instant.nullable(),
  nextRenewalAt: Instant,
  lastAttemptAt: Instant.nullable(),
  lastError: z.string().nullable(),
  failures: z.number().int(),
});
export const CertificatesAnswer = z.strictObject({ certificates: z.array(CertificateView) });
export const RenewalRequestedAnswer = z.strictObject({ jobId: z.string().meta({ description: 'the renewal job; poll the list for its result' }) });
