#!/bin/sh
# seaweedfs (compose, the SeaweedFS variant): writes the S3 identities from the environment, then
# runs one SeaweedFS node (master, volume, filer, S3 gateway). Two identities: the admin one, for
# seaweedfs-init only, and Coffer's, which may read, write and list in its bucket and nothing else
# (no bucket administration, no other bucket). The file lives in the container's own /tmp, mode
# 0600, rewritten at every start; no secret is printed.
set -eu
for value in "$SEAWEEDFS_ADMIN_ACCESS_KEY" "$SEAWEEDFS_ADMIN_SECRET_KEY" "$SEAWEEDFS_COFFER_ACCESS_KEY" "$SEAWEEDFS_COFFER_SECRET_KEY" "$SEAWEEDFS_BUCKET"; do
  case "$value" in
    "" | *[!A-Za-z0-9._+/=-]*) echo "seaweedfs: an identity or the bucket name is empty or has characters it should not" >&2; exit 64 ;;
  esac
done
bucket="$SEAWEEDFS_BUCKET"
config="${TMPDIR:-/tmp}/coffer-s3.json"
umask 077
cat > "$config" <<JSON
{
  "identities": [
    {
      "name": "coffer-admin",
      "credentials": [{ "accessKey": "$SEAWEEDFS_ADMIN_ACCESS_KEY", "secretKey": "$SEAWEEDFS_ADMIN_SECRET_KEY" }],
      "actions": ["Admin", "Read", "Write", "List", "Tagging"]
    },
    {
      "name": "coffer",
      "credentials": [{ "accessKey": "$SEAWEEDFS_COFFER_ACCESS_KEY", "secretKey": "$SEAWEEDFS_COFFER_SECRET_KEY" }],
      "actions": ["Read:$bucket", "Write:$bucket", "List:$bucket"]
    }
  ]
}
JSON
exec weed server -dir=/data -ip.bind=0.0.0.0 -master.volumeSizeLimitMB=1024 -volume.max=0 \
  -s3 -s3.port=8333 -s3.config="$config"
