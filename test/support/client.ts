import request from 'supertest';

/** Who a request is made as: a bearer token, a user (`token`) or an org's first admin (`adminToken`). */
export type Bearer = string | { token: string } | { adminToken: string };

/** The authorization header of a bearer token: the one way tests authenticate. */
export function bearer(who: Bearer): { authorization: string } {
  return { authorization: `Bearer ${tokenOf(who)}` };
}

function tokenOf(who: Bearer): string {
  if (typeof who === 'string') return who;
  const { token, adminToken } = who as { token?: string; adminToken?: string };
  const found = token ?? adminToken;
  if (!found) throw new Error('no bearer token to send');
  return found;
}

/** The path every route of one org lives under. */
export function orgPath(slug: string): string {
  return `/api/v1/organizations/${slug}`;
}

/** An org the test world created, with its first admin. */
export interface TestOrg {
  slug: string;
  id: string;
  adminUserId: string;
  adminKeyId: string;
  adminToken: string;
}

/** A user added to an org, with an API key of their own. */
export interface TestUser {
  userId: string;
  keyId: string;
  token: string;
}

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

/**
 * Requests (supertest) to one API under a base path, as one bearer: `client.get('users')` is
 * `GET <base>/users` with the client's authorization header. Paths are relative to the base
 * (a query string may follow); an empty path is the base itself.
 */
export class ApiClient {
  constructor(
    /** The API's origin (`http://127.0.0.1:<port>`), and the CA to trust when it is HTTPS. */
    readonly origin: string,
    readonly base: string,
    readonly token?: string,
    protected readonly ca?: Buffer,
  ) {}

  /** The path of `rest` under the base, for another client (rawGet, fetch, a second API). */
  path(rest: string | number = ''): string {
    const tail = String(rest).replace(/^\//, '');
    if (!tail) return this.base;
    return tail.startsWith('?') ? `${this.base}${tail}` : `${this.base}/${tail}`;
  }

  /** The absolute URL of `rest` on this API. */
  url(rest: string | number = ''): string {
    return `${this.origin}${this.path(rest)}`;
  }

  /** The authorization header of this client, or none. */
  headers(): Record<string, string> {
    return this.token ? bearer(this.token) : {};
  }

  /** The same base as another bearer, or without one. */
  as(who?: Bearer): this {
    return this.with({ token: who === undefined ? undefined : tokenOf(who) });
  }

  /** The same base and bearer on another API process (one started on the same installation). */
  at(origin: string): this {
    return this.with({ origin });
  }

  /** The routes of one org, by slug, as this client's bearer. */
  org(slug: string): ApiClient {
    return new ApiClient(this.origin, orgPath(slug), this.token, this.ca);
  }

  get(rest?: string | number) {
    return this.request('get', rest);
  }

  post(rest?: string | number) {
    return this.request('post', rest);
  }

  put(rest?: string | number) {
    return this.request('put', rest);
  }

  patch(rest?: string | number) {
    return this.request('patch', rest);
  }

  delete(rest?: string | number) {
    return this.request('delete', rest);
  }

  protected request(method: Method, rest?: string | number) {
    const test = request(this.origin)[method](this.path(rest));
    if (this.ca) test.ca(this.ca);
    return this.token ? test.set(bearer(this.token)) : test;
  }

  private with(changes: { token?: string; origin?: string }): this {
    return Object.assign(Object.create(Object.getPrototypeOf(this)), this, changes);
  }
}

/** An org's routes, as its first admin unless `as()` says otherwise, with what the org is. */
export class OrgClient extends ApiClient implements TestOrg {
  readonly slug: string;
  readonly id: string;
  readonly adminUserId: string;
  readonly adminKeyId: string;
  readonly adminToken: string;

  constructor(origin: string, org: TestOrg, ca?: Buffer) {
    super(origin, orgPath(org.slug), org.adminToken, ca);
    ({ slug: this.slug, id: this.id, adminUserId: this.adminUserId, adminKeyId: this.adminKeyId, adminToken: this.adminToken } = org);
  }
}
