/**
 * Bearer token formats. A recognizable prefix lets secret scanners find leaked tokens; the ids
 * inside say where to look the token up, so verification is one indexed query, never a scan.
 *   platform admin: coffer_pat.<tokenId>.<secret>
 *   org API key:    coffer_key.<orgId>.<keyId>.<secret>
 */
export type BearerToken =
  | { kind: 'platform'; tokenId: string; secret: string }
  | { kind: 'org'; orgId: string; keyId: string; secret: string };

const ID = '[0-9a-f]{16}';
const SECRET = '[A-Za-z0-9_-]{43}';
const PLATFORM = new RegExp(`^coffer_pat\\.(${ID})\\.(${SECRET})$`);
const ORG = new RegExp(`^coffer_key\\.(${ID})\\.(${ID})\\.(${SECRET})$`);

export function formatPlatformToken(tokenId: string, secret: string): string {
  return `coffer_pat.${tokenId}.${secret}`;
}

export function formatOrgKey(orgId: string, keyId: string, secret: string): string {
  return `coffer_key.${orgId}.${keyId}.${secret}`;
}

export function parseBearerToken(token: string): BearerToken | undefined {
  const platform = PLATFORM.exec(token);
  if (platform) return { kind: 'platform', tokenId: platform[1], secret: platform[2] };
  const org = ORG.exec(token);
  if (org) return { kind: 'org', orgId: org[1], keyId: org[2], secret: org[3] };
  return undefined;
}
