import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { createApi } from '../../apps/api/src/bootstrap';
import { createTestEnv, TestEnv } from './test-env';

export interface RunningApi {
  env: TestEnv;
  app: NestFastifyApplication;
  url: string;
  adminToken: string;
  http(): ReturnType<typeof request>;
  /** Creates an org with an admin; returns its slug, ids and the admin's bearer token. */
  createOrg(slug?: string): Promise<TestOrg>;
  close(): Promise<void>;
}

export interface TestOrg {
  slug: string;
  id: string;
  adminUserId: string;
  adminKeyId: string;
  adminToken: string;
}

/** The real API (Fastify, real PostgreSQL and Redis) listening on a free loopback port. */
export async function startApi(overrides: Parameters<typeof createTestEnv>[0] = {}): Promise<RunningApi> {
  const env = await createTestEnv(overrides);
  const app = await createApi(env.config);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = await app.getUrl();
  const adminToken = env.takeBootstrapToken();
  let counter = 0;
  const api: RunningApi = {
    env,
    app,
    url,
    adminToken,
    http: () => request(url),
    async createOrg(slug = `org-${env.databasePrefix.slice(-8)}-${++counter}`) {
      const res = await request(url)
        .post('/api/v1/organizations')
        .set('authorization', `Bearer ${adminToken}`)
        .send({ slug, name: `Org ${slug}`, admin: { email: `admin@${slug}.example`, displayName: 'Admin' } });
      if (res.status !== 201) throw new Error(`createOrg ${slug}: ${res.status} ${JSON.stringify(res.body)}`);
      return {
        slug,
        id: res.body.organization.id,
        adminUserId: res.body.admin.user.id,
        adminKeyId: res.body.admin.apiKey.id,
        adminToken: res.body.admin.apiKey.secret,
      };
    },
    async close() {
      await app.close();
      await env.destroy();
    },
  };
  return api;
}

/** Adds a user with a role and returns the user id and a bearer token for them. */
export async function addUser(api: RunningApi, org: TestOrg, role: 'admin' | 'security_officer' | 'member', email?: string) {
  const user = await api
    .http()
    .post(`/api/v1/organizations/${org.slug}/users`)
    .set('authorization', `Bearer ${org.adminToken}`)
    .send({ email: email ?? `${role}-${Math.random().toString(16).slice(2)}@${org.slug}.example`, displayName: role, role });
  if (user.status !== 201) throw new Error(`addUser: ${user.status} ${JSON.stringify(user.body)}`);
  const key = await api
    .http()
    .post(`/api/v1/organizations/${org.slug}/users/${user.body.user.id}/api-keys`)
    .set('authorization', `Bearer ${org.adminToken}`)
    .send({ name: `${role} key` });
  if (key.status !== 201) throw new Error(`addUser key: ${key.status} ${JSON.stringify(key.body)}`);
  return { userId: user.body.user.id as string, keyId: key.body.apiKey.id as string, token: key.body.secret as string };
}
