#!/bin/sh
# minio-init (compose one-shot, minio/mc image), idempotent: Coffer's bucket with default
# server-side encryption (SSE-S3 under the server's MINIO_KMS_SECRET_KEY), and a user that may
# read, write, list and delete in that bucket only. No secret is printed.
set -eu
mc alias set coffer http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "coffer/$MINIO_BUCKET"
mc encrypt set sse-s3 "coffer/$MINIO_BUCKET"
policy="${TMPDIR:-/tmp}/coffer-storage.json"
cat > "$policy" <<POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:GetEncryptionConfiguration"],
      "Resource": ["arn:aws:s3:::$MINIO_BUCKET"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:PutObjectRetention"],
      "Resource": ["arn:aws:s3:::$MINIO_BUCKET/*"]
    }
  ]
}
POLICY
mc admin policy create coffer coffer-storage "$policy"
mc admin user add coffer "$MINIO_COFFER_ACCESS_KEY" "$MINIO_COFFER_SECRET_KEY" >/dev/null
# Attaching twice is an error; the image has no grep, so the shell looks for the policy.
case "$(mc admin user info coffer "$MINIO_COFFER_ACCESS_KEY")" in
  *coffer-storage*) ;;
  *) mc admin policy attach coffer coffer-storage --user "$MINIO_COFFER_ACCESS_KEY" ;;
esac
echo "minio ready: bucket $MINIO_BUCKET (default encryption sse-s3), user with policy coffer-storage"
