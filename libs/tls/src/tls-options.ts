import { constants } from 'node:crypto';
import type { SecureContextOptions, TlsOptions } from 'node:tls';

/**
 * TLS 1.2 with ECDHE key exchange and AEAD ciphers only (Mozilla "intermediate", minus
 * everything without forward secrecy or authenticated encryption), and the three TLS 1.3
 * suites. TLS 1.3 is preferred simply by being the highest version both sides support.
 */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
];
export const TLS13_CIPHERSUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];

/**
 * Everything but the certificate. setSecureContext() builds a fresh context from its options
 * alone, so every reload must pass these again or the new context falls back to Node's defaults.
 */
export const TLS_CONTEXT_OPTIONS: SecureContextOptions = {
  minVersion: 'TLSv1.2',
  ciphers: [...TLS13_CIPHERSUITES, ...TLS12_CIPHERS].join(':'),
  ecdhCurve: 'X25519:prime256v1:secp384r1',
  honorCipherOrder: true,
  // Renegotiation only exists up to TLS 1.2 and has a history of attacks (and client-initiated
  // renegotiation is a cheap CPU DoS); compression is CRIME. OpenSSL 3 disables compression by
  // default already; the flag keeps it off whatever the build.
  secureOptions: constants.SSL_OP_NO_RENEGOTIATION | constants.SSL_OP_NO_COMPRESSION,
};

/** Options for the HTTPS server at creation; the certificate arrives later through setSecureContext. */
export const TLS_SERVER_OPTIONS: TlsOptions = { ...TLS_CONTEXT_OPTIONS };

export interface CertificatePair {
  /** PEM, leaf first, then intermediates. */
  cert: string;
  key: string;
}

export function secureContextOptions(pair: CertificatePair): SecureContextOptions {
  return { ...TLS_CONTEXT_OPTIONS, cert: pair.cert, key: pair.key };
}
