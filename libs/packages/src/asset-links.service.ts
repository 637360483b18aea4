import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { randomId } from '@coffer/crypto';
import { AppError } from '@coffer/http';
import { KMS, KmsProvider, orgKeyName } from '@coffer/kms';
import { OrgRef, OrgRegistry } from '@coffer/tenancy';
import { LinkKeysRepository } from './link-keys.repository';
import { StoredVersion } from './package';
import { PackagesRepository } from './packages.repository';

/** What a link's JWT says. `vid` pins the exact version: a re-created package's v1 is another. */
interface LinkClaims {
  iss: 'coffer';
  aud: 'coffer-asset';
  org: string;
  pkg: string;
  ver: number;
  vid: string;
  jti: string;
  iat: number;
  exp: number;
  /** The creating user and the key they used: the link dies with their access. */
  sub: string;
  akid: string;
}

const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

/**
 * Signed asset links (assets reachable only through org-bound signed JWTs: docs/requirements.md
 * §4): JWTs (HS256) signed with a key of the org's own, kept wrapped
 * by the org's KMS key, so one org's key can never vouch for another org's content. Revoking an
 * org's links revokes its signing key.
 */
@Injectable()
export class AssetLinksService {
  constructor(
    private readonly keys: LinkKeysRepository,
    private readonly packages: PackagesRepository,
    private readonly orgs: OrgRegistry,
    @Inject(KMS) private readonly kms: KmsProvider,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async create(org: OrgRef, version: StoredVersion, ttlSeconds: number | undefined, creator: { userId: string; apiKeyId: string }) {
    const ttl = ttlSeconds ?? this.config.PACKAGE_LINK_DEFAULT_TTL_SECONDS;
    if (ttl > this.config.PACKAGE_LINK_MAX_TTL_SECONDS) {
      throw new AppError('validation_failed', `links live at most ${this.config.PACKAGE_LINK_MAX_TTL_SECONDS} seconds`);
    }
    const key = (await this.keys.current(org)) ?? (await this.newKey(org));
    const now = Math.floor(Date.now() / 1000);
    const claims: LinkClaims = {
      iss: 'coffer',
      aud: 'coffer-asset',
      org: org.id,
      pkg: version.package,
      ver: version.version,
      vid: version.id,
      jti: randomId(12),
      iat: now,
      exp: now + ttl,
      sub: creator.userId,
      akid: creator.apiKeyId,
    };
    const signingInput = `${b64({ alg: 'HS256', typ: 'JWT', kid: key.id })}.${b64(claims)}`;
    const token = `${signingInput}.${(await this.sign(org, key.wrappedKey, signingInput)).toString('base64url')}`;
    return { id: claims.jti, url: `/api/v1/assets/${token}`, expiresAt: new Date(claims.exp * 1000) };
  }

  /**
   * The org and version a token grants, or: 401 invalid_link (malformed, forged, tampered,
   * another org's key), 403 link_revoked, 401 link_expired, 404 for a deleted version. The
   * signature is checked before anything else the token says is believed.
   */
  async resolve(token: string): Promise<{ org: OrgRef; version: StoredVersion; linkId: string }> {
    const invalid = () => new AppError('invalid_link', 'the link is not valid');
    const [header, payload, signature, extra] = token.split('.');
    if (!header || !payload || !signature || extra !== undefined) throw invalid();
    const parsed = (part: string) => {
      try {
        return JSON.parse(Buffer.from(part, 'base64url').toString()) as Record<string, unknown>;
      } catch {
        throw invalid();
      }
    };
    const head = parsed(header);
    const claims = parsed(payload) as Partial<LinkClaims>;
    if (head.alg !== 'HS256' || typeof head.kid !== 'string' || typeof claims.org !== 'string') throw invalid();
    const org = await this.orgs.resolveById(claims.org);
    if (!org || org.status !== 'active') throw invalid();
    const key = await this.keys.byId(org, head.kid);
    if (!key) throw invalid();
    const expected = await this.sign(org, key.wrappedKey, `${header}.${payload}`);
    const given = Buffer.from(signature, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw invalid();
    if (claims.iss !== 'coffer' || claims.aud !== 'coffer-asset' || typeof claims.pkg !== 'string' || typeof claims.ver !== 'number') throw invalid();
    if (key.revokedAt) throw new AppError('link_revoked', 'the links of this organization were revoked');
    if (typeof claims.exp !== 'number' || claims.exp * 1000 <= Date.now()) throw new AppError('link_expired', 'the link has expired');
    // Links made before they named their creator (at most PACKAGE_LINK_MAX_TTL_SECONDS old) have none.
    const creator = typeof claims.sub === 'string' && typeof claims.akid === 'string' ? { userId: claims.sub, apiKeyId: claims.akid } : undefined;
    const refusal = await this.keys.linkRefusal(org, String(claims.jti), creator);
    if (refusal) throw new AppError('link_revoked', refusal);
    const version = await this.packages.version(org, claims.pkg, claims.ver);
    if (!version || version.id !== claims.vid) throw new AppError('package_version_not_found', 'the linked version no longer exists');
    return { org, version, linkId: String(claims.jti) };
  }

  /**
   * Revokes one link by the id its creation answered (kept until the longest a link lives). An
   * unknown id is revoked all the same: ids are random, and nothing says whether one was issued.
   */
  async revoke(org: OrgRef, linkId: string): Promise<void> {
    await this.keys.revokeLink(org, linkId, new Date(Date.now() + this.config.PACKAGE_LINK_MAX_TTL_SECONDS * 1000));
  }

  /** Revokes every outstanding link of the org; the next link is signed with a new key. */
  revokeAll(org: OrgRef): Promise<number> {
    return this.keys.revokeAll(org);
  }

  private async newKey(org: OrgRef) {
    const dataKey = await this.kms.generateDataKey(orgKeyName(org.id));
    return this.keys.add(org, { id: randomId(8), wrappedKey: dataKey.wrapped, kmsKeyVersion: dataKey.keyVersion });
  }

  /** HMAC-SHA256 under the link key, itself derived with the org id: bound to this org. */
  private async sign(org: OrgRef, wrappedKey: string, input: string): Promise<Buffer> {
    const dataKey = await this.kms.unwrap(orgKeyName(org.id), wrappedKey);
    const macKey = Buffer.from(hkdfSync('sha256', dataKey, 'coffer-asset-link', org.id, 32));
    return createHmac('sha256', macKey).update(input).digest();
  }
}
