import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { INestApplicationContext } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import type { AppConfig } from '@coffer/config';
import { createApi } from '../../apps/api/src/bootstrap';
import { migrateInstallation } from '../../apps/cli/src/migrate';
import { createProvisioner } from '../../apps/provisioner/src/bootstrap';
import { createWorker } from '../../apps/worker/src/bootstrap';
import { startApiProcess, startWorkerProcess } from './api-process';
import { ApiClient, OrgClient, TestOrg, TestUser } from './client';
import { OpenBaoDouble, OpenBaoDoubleOptions } from './openbao-double';
import { startS3, TestS3 } from './s3-server';
import { createTestEnv, TestConfig, TestEnv } from './test-env';
import { startWebhookReceiver, WebhookReceiver } from './webhook';

/** Coffer settings as environment strings, over the test env's defaults. */
export type Settings = Partial<Record<keyof AppConfig, string>>;
export type Role = 'admin' | 'security_officer' | 'member';

export interface WorldOptions {
  /** The OpenBao double, with Coffer's KMS on its transit engine (`true`, or the double's options). */
  vault?: boolean | OpenBaoDoubleOptions;
  /** An S3 server (s3rver) with these buckets. */
  s3?: string[];
  /** Packages are stored in this bucket of the S3 server (STORAGE_DRIVER=s3), not in STORAGE_DIR. */
  storageBucket?: string;
  /** An alert receiver over HTTP, the only entry of ALERT_WEBHOOK_URLS. */
  webhook?: boolean;
  /** HTTPS with a CA generated for this world (TLS_MODE=internal-ca); clients trust that CA. */
  tls?: boolean;
  /** Settings over the env's defaults and the doubles' own. */
  config?: Settings;
  /** The API as the compiled main.js in a process of its own, instead of in this one. */
  process?: boolean | { extraEnv?: Record<string, string>; onOutput?: (chunk: string) => void };
  /** Orgs created at start (each with a first admin), by slug. */
  orgs?: string[];
  /** Users added at start, each with an API key, by the name `world.user()` takes. */
  users?: Record<string, { org: string; role: Role; email?: string }>;
  /** An in-process worker started last (`true`, or settings over the API's). */
  worker?: boolean | Partial<AppConfig>;
}

/**
 * One Coffer installation for a test file: its own databases, roles and Redis prefix (test-env),
 * migrated by `coffer migrate`'s code, the provisioner and the API, and whichever of the OpenBao double, the S3 server, the alert receiver and the worker
 * the options ask for, with orgs and users. `stop()` tears down everything it started, the
 * workers first and the doubles last, whatever a test left running.
 */
export class TestWorld {
  private readonly started = {
    dir: undefined as string | undefined,
    vault: undefined as OpenBaoDouble | undefined,
    s3: undefined as TestS3 | undefined,
    webhook: undefined as WebhookReceiver | undefined,
    env: undefined as TestEnv | undefined,
    app: undefined as NestFastifyApplication | undefined,
    child: undefined as ChildProcess | undefined,
    worker: undefined as INestApplicationContext | undefined,
    provisioner: undefined as INestApplicationContext | undefined,
    processes: [] as { child: ChildProcess; kill: NodeJS.Signals }[],
  };
  private readonly orgs = new Map<string, OrgClient>();
  private readonly users = new Map<string, TestUser>();
  private origin = '';
  private ca?: Buffer;
  private orgCounter = 0;
  /** The platform admin's bootstrap token. */
  adminToken = '';

  private constructor() {}

  static async start(options: WorldOptions = {}): Promise<TestWorld> {
    const world = new TestWorld();
    try {
      await world.boot(options);
    } catch (error) {
      await world.stop();
      throw error;
    }
    return world;
  }

  get env(): TestEnv {
    return this.need(this.started.env, 'env');
  }

  get config(): TestConfig {
    return this.env.config;
  }

  /** The API's origin: `http://127.0.0.1:<port>` (https with `tls`). */
  get url(): string {
    return this.origin;
  }

  /** The API in this process (not with `process`). */
  get app(): NestFastifyApplication {
    return this.need(this.started.app, 'in-process API (the API runs as a process)');
  }

  /** The API's process (with `process`). */
  get child(): ChildProcess {
    return this.need(this.started.child, 'API process (the API runs in this process)');
  }

  get vault(): OpenBaoDouble {
    return this.need(this.started.vault, 'OpenBao double (start the world with `vault`)');
  }

  get s3(): TestS3 {
    return this.need(this.started.s3, 'S3 server (start the world with `s3`)');
  }

  get webhook(): WebhookReceiver {
    return this.need(this.started.webhook, 'alert receiver (start the world with `webhook`)');
  }

  /** The in-process worker, from the `worker` option or startWorker(). */
  get worker(): INestApplicationContext {
    return this.need(this.started.worker, 'worker (start the world with `worker`, or startWorker())');
  }

  /** The provisioner in this process (every world has one: org creation waits for it). */
  get provisioner(): INestApplicationContext {
    return this.need(this.started.provisioner, 'provisioner (stopped by stopProvisioner())');
  }

  async startProvisioner(): Promise<INestApplicationContext> {
    if (this.started.provisioner) throw new Error('a provisioner is already running in this world');
    this.started.provisioner = await createProvisioner(this.config, 10_000);
    return this.started.provisioner;
  }

  async stopProvisioner(): Promise<void> {
    const provisioner = this.started.provisioner;
    this.started.provisioner = undefined;
    await provisioner?.close();
  }

  /** The CA to trust with `tls`. */
  get caCert(): Buffer {
    return this.need(this.ca, 'CA (start the world with `tls`)');
  }

  /** `/api/v1` as the platform admin. */
  get api(): ApiClient {
    return new ApiClient(this.origin, '/api/v1', this.adminToken, this.ca);
  }

  /** Bare requests to the API (health, metrics, unknown routes), without a bearer. */
  http() {
    return request(this.origin);
  }

  /** An org of this world (by slug, or as createOrg() gave it), as its first admin. */
  org(ref: string | TestOrg): OrgClient {
    const slug = typeof ref === 'string' ? ref : ref.slug;
    return this.need(this.orgs.get(slug), `org ${slug} of this world`);
  }

  /** A user of the `users` option, by name. */
  user(name: string): TestUser {
    return this.need(this.users.get(name), `user ${name} of this world`);
  }

  /** Creates an org with a first admin through the API; slugs default to unique ones. */
  async createOrg(slug = `org-${this.env.databasePrefix.slice(-8)}-${++this.orgCounter}`): Promise<OrgClient> {
    const res = await this.api
      .post('organizations')
      .send({ slug, name: `Org ${slug}`, admin: { email: `admin@${slug}.example`, displayName: 'Admin' } });
    if (res.status !== 201) throw new Error(`createOrg ${slug}: ${res.status} ${JSON.stringify(res.body)}`);
    const org = new OrgClient(
      this.origin,
      { slug, id: res.body.organization.id, adminUserId: res.body.admin.user.id, adminKeyId: res.body.admin.apiKey.id, adminToken: res.body.admin.apiKey.secret },
      this.ca,
    );
    this.orgs.set(slug, org);
    return org;
  }

  /** Adds a user with a role to an org, and an API key for them, as the org's first admin. */
  async addUser(ref: string | TestOrg, role: Role, email?: string): Promise<TestUser> {
    const org = this.org(ref);
    const user = await org
      .post('users')
      .send({ email: email ?? `${role}-${Math.random().toString(16).slice(2)}@${org.slug}.example`, displayName: role, role });
    if (user.status !== 201) throw new Error(`addUser: ${user.status} ${JSON.stringify(user.body)}`);
    const key = await org.post(`users/${user.body.user.id}/api-keys`).send({ name: `${role} key` });
    if (key.status !== 201) throw new Error(`addUser key: ${key.status} ${JSON.stringify(key.body)}`);
    return { userId: user.body.user.id, keyId: key.body.apiKey.id, token: key.body.apiKey.secret };
  }

  /** The worker in this process (createWorker), on the API's settings with `overrides`. */
  async startWorker(overrides: Partial<AppConfig> = {}): Promise<INestApplicationContext> {
    if (this.started.worker) throw new Error('a worker is already running in this world');
    this.started.worker = await createWorker({ ...this.config, ...overrides }, 10_000);
    return this.started.worker;
  }

  async stopWorker(): Promise<void> {
    const worker = this.started.worker;
    this.started.worker = undefined;
    await worker?.close();
  }

  /** The compiled worker as a process of its own; killed by stop() if still running. */
  async startWorkerProcess(extraEnv: Record<string, string> = {}, onOutput?: (chunk: string) => void): Promise<ChildProcess> {
    const child = await startWorkerProcess(this.config, extraEnv, onOutput);
    this.started.processes.push({ child, kill: 'SIGKILL' });
    return child;
  }

  /** Another API process on this installation, with nothing cached; stopped by stop() if still running. */
  async startApiProcess(): Promise<{ child: ChildProcess; url: string; httpUrl: string }> {
    const started = await startApiProcess(this.config);
    this.started.processes.push({ child: started.child, kill: 'SIGTERM' });
    return started;
  }

  /** Tears down what start() and the test started, in order; every step runs even if one fails. */
  async stop(): Promise<void> {
    const { started } = this;
    const steps: (() => unknown)[] = [
      () => this.stopWorker(),
      ...started.processes.map(({ child, kill }) => () => endProcess(child, kill)),
      () => started.app?.close(),
      () => started.child && endProcess(started.child, 'SIGTERM'),
      () => this.stopProvisioner(),
      () => started.env?.destroy(),
      () => started.webhook?.close(),
      () => started.s3?.stop(),
      () => started.vault?.stop(),
      () => started.dir && rmSync(started.dir, { recursive: true, force: true }),
    ];
    const errors: unknown[] = [];
    for (const step of steps) await Promise.resolve().then(step).catch((error: unknown) => errors.push(error));
    Object.assign(started, { app: undefined, child: undefined, env: undefined, webhook: undefined, s3: undefined, vault: undefined, dir: undefined, processes: [] });
    if (errors.length) throw errors[0];
  }

  private async boot(options: WorldOptions): Promise<void> {
    const { started } = this;
    started.dir = mkdtempSync(join(tmpdir(), 'coffer-world-'));
    if (options.vault) {
      started.vault = new OpenBaoDouble(options.vault === true ? {} : options.vault);
      await started.vault.start();
    }
    if (options.s3) started.s3 = await startS3(options.s3);
    if (options.webhook) started.webhook = await startWebhookReceiver();
    const s3 = started.s3;
    const bucket = options.storageBucket;
    if (bucket && !s3) throw new Error('storageBucket needs the s3 option');
    started.env = await createTestEnv({
      ...started.vault?.cofferConfig,
      ...(started.webhook && { ALERT_WEBHOOK_URLS: started.webhook.url }),
      ...(bucket && s3 && { STORAGE_DRIVER: 's3', S3_ENDPOINT: s3.endpoint, S3_BUCKET: bucket, S3_ACCESS_KEY: s3.accessKeyId, S3_SECRET_KEY: s3.secretAccessKey }),
      ...(options.tls && { TLS_MODE: 'internal-ca', TLS_DIR: join(started.dir, 'tls') }),
      ...options.config,
    });
    // As compose and the local start do: `coffer migrate`, then the provisioner, then the API.
    await migrateInstallation(this.config);
    await this.startProvisioner();
    if (options.process) {
      const { extraEnv = {}, onOutput } = options.process === true ? {} : options.process;
      const spawned = await startApiProcess(this.config, onOutput, extraEnv);
      started.child = spawned.child;
      this.origin = spawned.url;
    } else {
      started.app = await createApi(this.config);
      await started.app.listen({ host: '127.0.0.1', port: 0 });
      // Nest's getUrl() says http:// whatever the server is: with `tls` the listener is HTTPS.
      const url = await started.app.getUrl();
      this.origin = options.tls ? url.replace(/^http:/, 'https:') : url;
    }
    if (options.tls) this.ca = readFileSync(join(this.config.TLS_DIR, 'ca.crt'));
    this.adminToken = this.env.takeBootstrapToken();
    for (const slug of options.orgs ?? []) await this.createOrg(slug);
    for (const [name, { org, role, email }] of Object.entries(options.users ?? {})) {
      this.users.set(name, await this.addUser(org, role, email));
    }
    if (options.worker) await this.startWorker(options.worker === true ? {} : options.worker);
  }

  private need<T>(value: T | undefined, what: string): T {
    if (value === undefined) throw new Error(`this test world has no ${what}`);
    return value;
  }
}

/** Ends a process unless it has exited already (with a code, or by a signal). */
async function endProcess(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}
