import type { FastifyInstance } from 'fastify';

/** One year, subdomains included: browsers then refuse plain HTTP to this host for that long. */
export const HSTS = 'max-age=31536000; includeSubDomains';

/**
 * Headers for every HTTPS response. The API only serves JSON, so the CSP forbids everything:
 * a response rendered as a page by mistake can load nothing and cannot be framed.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'strict-transport-security': HSTS,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

/**
 * onSend runs for every reply Fastify sends: route results, Nest's exception filter output,
 * Fastify's own errors (413 from the body limit, 404) and the 500 of an unexpected throw.
 * Headers set earlier (onRequest) would be lost when an error handler resets the reply.
 */
export function installSecurityHeaders(fastify: FastifyInstance): void {
  fastify.addHook('onSend', async (_request, reply, payload) => {
    reply.headers(SECURITY_HEADERS);
    return payload;
  });
}
