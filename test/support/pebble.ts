import { ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { get } from 'node:https';
import { join } from 'node:path';
import { InternalCaRepository } from '@coffer/tls';
import { freePort } from './api-process';

export interface Pebble {
  directoryUrl: string;
  /** Trust for pebble's own HTTPS listener (NODE_EXTRA_CA_CERTS of the ACME client). */
  listenerCaFile: string;
  /** The root that issued the certificates (changes on every pebble start). */
  root(): Promise<string>;
  stop(): Promise<void>;
  /** Starts again on the same ports (after stop(): the ACME server coming back). */
  restart(): Promise<void>;
}

/**
 * pebble (Let's Encrypt's ACME test server) and pebble-challtestsrv as its DNS, so that every
 * name resolves to 127.0.0.1 and HTTP-01 is validated for real against `httpPort`
 * (see test/support/README.md). Debian ships no certificate for pebble's listener:
 * one is made here with a throwaway CA. Bad-nonce rejections stay on (5 %), as real CAs do.
 */
export async function startPebble(
  dir: string,
  options: {
    httpPort: number;
    validitySeconds: number;
    /** A fixed ACME port, e.g. for a directory URL configured before pebble runs. */
    acmePort?: number;
    /** Skip HTTP-01 validation (PEBBLE_VA_ALWAYS_VALID): for tests without a listener answering challenges. */
    alwaysValid?: boolean;
  },
): Promise<Pebble> {
  const ca = new InternalCaRepository(join(dir, 'listener-ca'));
  await ca.ensureCa('pebble listener test CA');
  mkdirSync(join(dir, 'listener'), { recursive: true });
  const listener = { certFile: join(dir, 'listener', 'cert.pem'), keyFile: join(dir, 'listener', 'key.pem') };
  await ca.issueLeaf(['localhost', '127.0.0.1'], listener);
  const [freeAcmePort, managementPort, dnsPort, challManagementPort, tlsPort] = await Promise.all([1, 2, 3, 4, 5].map(() => freePort()));
  const acmePort = options.acmePort ?? freeAcmePort;
  const config = join(dir, 'pebble-config.json');
  writeFileSync(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: listener.certFile,
        privateKey: listener.keyFile,
        httpPort: options.httpPort,
        tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
        certificateValidityPeriod: options.validitySeconds,
      },
    }),
  );
  let children: ChildProcess[] = [];
  let output = '';
  const spawnLogged = (command: string, args: string[], env: Record<string, string> = {}) => {
    const child = spawn(command, args, { env: { ...process.env, ...env } });
    child.stdout!.on('data', (c) => (output += c));
    child.stderr!.on('data', (c) => (output += c));
    children.push(child);
  };
  const listenerCa = readFileSync(ca.ca.certFile);
  const fetchText = (url: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      get(url, { ca: listenerCa }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      }).once('error', reject);
    });
  const directoryUrl = `https://127.0.0.1:${acmePort}/dir`;
  const start = async () => {
    children = [];
    spawnLogged('pebble-challtestsrv', ['-defaultIPv6', '', '-defaultIPv4', '127.0.0.1', '-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '',
      '-tlsalpn01', '', '-management', `127.0.0.1:${challManagementPort}`]);
    spawnLogged('pebble', ['-config', config, '-dnsserver', `127.0.0.1:${dnsPort}`], {
      PEBBLE_VA_NOSLEEP: '1',
      ...(options.alwaysValid && { PEBBLE_VA_ALWAYS_VALID: '1' }),
    });
    const deadline = Date.now() + 20_000;
    while (!(await fetchText(directoryUrl).then((r) => r.status === 200, () => false))) {
      if (Date.now() > deadline || children.some((c) => c.exitCode !== null)) {
        children.forEach((c) => c.kill('SIGKILL'));
        throw new Error(`pebble did not start:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const stop = async () => {
    await Promise.all(
      children.map((child) =>
        child.exitCode !== null ? undefined : new Promise((resolve) => child.once('exit', resolve).kill('SIGTERM')),
      ),
    );
  };
  await start();
  return {
    directoryUrl,
    listenerCaFile: ca.ca.certFile,
    root: async () => (await fetchText(`https://127.0.0.1:${managementPort}/roots/0`)).body,
    stop,
    restart: start,
  };
}
