import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';

/**
 * A real S3 HTTP server (s3rver: the S3 REST API, single PUT) on a free loopback port, storing objects
 * as files under `directory`, so tests can read exactly the bytes that reached the server.
 */
export interface TestS3 {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  directory: string;
  /** Every stored object's key and bytes, from s3rver's data directory. */
  objects(bucket: string): { key: string; body: Buffer }[];
  /** The body of `PUT .../audit-logs/destination` that points an org's audit delivery at a bucket here. */
  destination(bucket: string, prefix: string): { endpoint: string; bucket: string; prefix: string; accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

const OBJECT_SUFFIX = '._S3rver_object';

export async function startS3(buckets: string[]): Promise<TestS3> {
  const directory = mkdtempSync(join(tmpdir(), 'coffer-s3-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true, configureBuckets: buckets.map((name) => ({ name })) });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  // s3rver's fixed credentials. It refuses an unknown access key id but does not check SigV4
  // signatures, so a wrong secret is not caught by this server.
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
  return {
    endpoint,
    ...credentials,
    directory,
    destination(bucket, prefix) {
      return { endpoint, bucket, prefix, ...credentials };
    },
    objects(bucket) {
      const root = join(directory, bucket);
      const walk = (dir: string): string[] =>
        readdirSync(dir).flatMap((name) => (statSync(join(dir, name)).isDirectory() ? walk(join(dir, name)) : [join(dir, name)]));
      return walk(root)
        .filter((file) => file.endsWith(OBJECT_SUFFIX))
        .map((file) => ({ key: file.slice(root.length + 1, -OBJECT_SUFFIX.length), body: readFileSync(file) }))
        .sort((a, b) => a.key.localeCompare(b.key));
    },
    async stop() {
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
