// seaweedfs-init (compose one-shot of the SeaweedFS variant, run with node in Coffer's image):
// creates Coffer's bucket if missing, sets its default encryption to SSE-S3 (AES256) and reads it
// back, with the same S3 client (`minio`) and calls Coffer's storage driver uses. Idempotent.
// Exits 1 if the server refuses or does not keep the encryption: the variant promises it.
// No secret is printed.
import { Client } from 'minio';

const { S3_ENDPOINT, S3_BUCKET, S3_ADMIN_ACCESS_KEY, S3_ADMIN_SECRET_KEY } = process.env;
const fail = (message) => {
  console.error(`seaweedfs-init: ${message}`);
  process.exit(1);
};
if (!S3_ENDPOINT || !S3_BUCKET || !S3_ADMIN_ACCESS_KEY || !S3_ADMIN_SECRET_KEY) {
  fail('S3_ENDPOINT, S3_BUCKET, S3_ADMIN_ACCESS_KEY and S3_ADMIN_SECRET_KEY are required');
}
const url = new URL(S3_ENDPOINT);
const region = 'us-east-1';
const client = new Client({
  endPoint: url.hostname,
  port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
  useSSL: url.protocol === 'https:',
  region,
  accessKey: S3_ADMIN_ACCESS_KEY,
  secretKey: S3_ADMIN_SECRET_KEY,
  pathStyle: true,
});
const reason = (error) => error?.code ?? error?.message ?? String(error);

try {
  if (!(await client.bucketExists(S3_BUCKET))) await client.makeBucket(S3_BUCKET, region);
} catch (error) {
  fail(`cannot create bucket ${S3_BUCKET}: ${reason(error)}`);
}
try {
  await client.setBucketEncryption(S3_BUCKET, { Rule: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] });
} catch (error) {
  fail(`the server refused default encryption on ${S3_BUCKET}: ${reason(error)}`);
}
let algorithm;
try {
  const config = await client.getBucketEncryption(S3_BUCKET);
  const rules = [config?.ServerSideEncryptionConfiguration?.Rule ?? []].flat();
  algorithm = rules.map((r) => r?.ApplyServerSideEncryptionByDefault?.SSEAlgorithm).find(Boolean);
} catch (error) {
  fail(`cannot read the default encryption of ${S3_BUCKET} back: ${reason(error)}`);
}
if (algorithm !== 'AES256') fail(`${S3_BUCKET} reports default encryption ${algorithm ?? 'none'}, not AES256`);
console.log(`seaweedfs ready: bucket ${S3_BUCKET} (default encryption AES256); Coffer's identity is limited to it (seaweedfs.sh)`);
