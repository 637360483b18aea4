#!/bin/sh
# Writes .env beside this file (mode 0600) with fresh random secrets and the site's settings, for
# `docker compose up` in this directory. Needs only a POSIX shell and openssl: no Node, no
# checkout beyond this directory. Asks for the domain and the e-mail only when they are not given
# and a terminal is there to answer. Never overwrites an existing file: the secrets in it are
# what the databases, OpenBao and the object store were set up with.
set -eu

LETS_ENCRYPT=https://acme-v02.api.letsencrypt.org/directory
# The version of Coffer this directory belongs to (package.json; a test keeps them equal): the tag
# `docker compose up --build` gives the image it builds, so that each version keeps its own.
COFFER_VERSION=0.1.0
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)

usage() {
  cat <<USAGE
usage: install.sh [--domain NAME] [--acme-email ADDRESS] [options]

Writes .env for deploy/compose (mode 0600) with fresh random secrets; never overwrites one.

  --domain NAME          the name clients use to reach Coffer (asked in a terminal if missing)
  --acme-email ADDRESS   Let's Encrypt account contact, required for a public name (asked in a
                         terminal if missing); a name no public CA can validate (coffer.internal,
                         localhost) gets the installation's own CA instead and needs none
  --acme-directory URL   another ACME CA (e.g. Let's Encrypt staging), https only
  --storage minio|seaweedfs
                         the object store: minio (default; the last MinIO community images,
                         frozen) or seaweedfs (compose.seaweedfs.yaml; see ADR 0008)
  --image REF            the Coffer image (default coffer:$COFFER_VERSION, built from the
                         checkout by \`docker compose up --build\`; or a registry or loaded image)
  --out PATH             where to write (default: .env beside this script)
  -h, --help             this help; nothing is written

Exit codes: 0 written, 1 the file exists or could not be written, 64 usage.
USAGE
}

fail() {
  echo "install: $1" >&2
  exit "$2"
}

# The value of an option given as `--name value` or `--name=value`.
need_value() {
  [ "$#" -ge 2 ] || fail "$1 needs a value (see --help)" 64
}

domain='' domain_set='' acme_email='' acme_email_set='' acme_directory='' storage=minio image=coffer:$COFFER_VERSION out="$here/.env"
while [ "$#" -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --domain=* | --acme-email=* | --acme-directory=* | --storage=* | --image=* | --out=*)
      name=${1%%=*}
      value=${1#*=}
      shift
      set -- "$name" "$value" "$@"
      continue
      ;;
    --domain) need_value "$@"; domain=$2; domain_set=1; shift 2 ;;
    --acme-email) need_value "$@"; acme_email=$2; acme_email_set=1; shift 2 ;;
    --acme-directory) need_value "$@"; acme_directory=$2; shift 2 ;;
    --storage) need_value "$@"; storage=$2; shift 2 ;;
    --image) need_value "$@"; image=$2; shift 2 ;;
    --out) need_value "$@"; out=$2; shift 2 ;;
    --) shift; break ;;
    -*) fail "unknown option $1 (see --help)" 64 ;;
    *) fail "unexpected argument $1 (see --help)" 64 ;;
  esac
done
[ "$#" -eq 0 ] || fail "unexpected argument $1 (see --help)" 64

[ -e "$out" ] && fail "$out exists; not overwriting it (its secrets are what the services were set up with). Move it away to start over." 1
command -v openssl >/dev/null 2>&1 || fail 'openssl is required (it makes the secrets)' 1

# A terminal on both sides: ask what was not given. Lines are read in order, also when typed or
# pasted ahead of the question; end of input answers nothing.
interactive=''
if [ -t 0 ] && [ -t 1 ]; then interactive=1; fi
ask() {
  answer=''
  [ -n "$interactive" ] || return 0
  printf '%s' "$1"
  IFS= read -r answer || answer=''
}

newline='
'
trim() {
  printf '%s\n' "$1" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//'
}
# One line, matched whole by the extended regular expression $2.
matches() {
  case "$1" in *"$newline"*) return 1 ;; esac
  printf '%s\n' "$1" | grep -Eq "$2"
}

if [ -z "$domain_set" ]; then
  ask 'Domain name of this Coffer (e.g. kb.example.com): '
  domain=$answer
fi
domain=$(trim "$domain" | tr '[:upper:]' '[:lower:]')
[ -n "$domain" ] || fail '--domain is required (the name clients use to reach Coffer)' 64
label='[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?'
if [ "${#domain}" -gt 253 ] || ! matches "$domain" "^$label(\\.$label)*\$"; then
  fail "--domain $domain is not a host name" 64
fi

# A name a public ACME CA can validate: dotted, not an address, not a private suffix.
public=''
case "$domain" in
  *.local | *.localhost | *.internal | *.lan | *.home.arpa) ;;
  *.*) matches "$domain" '^[0-9.]+$' || public=1 ;;
esac

if [ -n "$public" ]; then
  if [ -z "$acme_email_set" ]; then
    ask "E-mail for Let's Encrypt expiry notices: "
    acme_email=$answer
  fi
  acme_email=$(trim "$acme_email")
  matches "$acme_email" '^[^[:space:]@]+@[^[:space:]@]+\.[^[:space:]@]+$' ||
    fail "--acme-email is required for $domain (Let's Encrypt account contact)" 64
fi
if [ -n "$acme_directory" ] && ! matches "$acme_directory" '^https://[^[:space:]]+$'; then
  fail '--acme-directory must be an https URL' 64
fi
case "$storage" in
  minio | seaweedfs) ;;
  *) fail "--storage must be minio or seaweedfs, not $storage" 64 ;;
esac
matches "$image" '^[A-Za-z0-9][A-Za-z0-9._/:@-]*$' || fail "--image $image is not an image reference" 64

# 256 bits, hex: safe inside URLs (the database and Redis URLs carry these passwords).
secret() {
  openssl rand -hex 32
}
# A random (version 4) UUID.
uuid() {
  h=$(openssl rand -hex 16)
  case $(printf '%s' "$h" | cut -c17) in
    [048c]) variant=8 ;;
    [159d]) variant=9 ;;
    [26ae]) variant=a ;;
    *) variant=b ;;
  esac
  printf '%s-%s-4%s-%s%s-%s\n' \
    "$(printf '%s' "$h" | cut -c1-8)" "$(printf '%s' "$h" | cut -c9-12)" "$(printf '%s' "$h" | cut -c14-16)" \
    "$variant" "$(printf '%s' "$h" | cut -c18-20)" "$(printf '%s' "$h" | cut -c21-32)"
}

site() {
  if [ -n "$public" ]; then
    echo 'TLS_MODE=acme'
    echo "TLS_DOMAINS=$domain"
    echo "ACME_EMAIL=$acme_email"
    echo "ACME_DIRECTORY_URL=${acme_directory:-$LETS_ENCRYPT}"
  else
    echo '# Not a public DNS name: a CA of this installation signs the certificate (clients trust'
    echo "# /var/lib/coffer/tls/ca.crt of the api container). Use a public name for Let's Encrypt."
    echo 'TLS_MODE=internal-ca'
    echo "TLS_DOMAINS=$domain"
  fi
}

# Printed right after COMPOSE_PROJECT_NAME, hence the leading newline.
storage_files() {
  [ "$storage" = seaweedfs ] || return 0
  echo
  echo '# The object store is SeaweedFS: Compose reads compose.seaweedfs.yaml over compose.yaml (ADR 0008).'
  echo 'COMPOSE_FILE=compose.yaml:compose.seaweedfs.yaml'
}

render() {
  cat <<ENV
# Written by deploy/compose/install.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ). Read by deploy/compose/compose.yaml.
# SECRET: keep it mode 0600 and back it up with the OpenBao keys (deploy/compose/README.md).
# Other Coffer settings (.env.example) may be added here; compose.yaml passes them on.

# Names the volumes and networks (coffer_postgres-data, ...).
COMPOSE_PROJECT_NAME=coffer$(storage_files)

# --- Site ----------------------------------------------------------------------------
$(site)
LOG_LEVEL=info
COFFER_IMAGE=$image

# --- PostgreSQL: the superuser (init only), the owner and the app role -----------------
POSTGRES_PASSWORD=$(secret)
COFFER_DB_OWNER_PASSWORD=$(secret)
COFFER_DB_APP_PASSWORD=$(secret)

# --- Redis (Valkey) ---------------------------------------------------------------------
REDIS_PASSWORD=$(secret)

# --- Object store: root, the server-side encryption key, the bucket and Coffer's user --
MINIO_ROOT_USER=coffer-root-$(openssl rand -hex 4)
MINIO_ROOT_PASSWORD=$(secret)
MINIO_KMS_SECRET_KEY=$(openssl rand -base64 32)
MINIO_BUCKET=coffer
MINIO_COFFER_ACCESS_KEY=coffer-$(openssl rand -hex 8)
MINIO_COFFER_SECRET_KEY=$(secret)

# --- OpenBao: the AppRole coffer init registers; its expiring secret ids live in a volume --
KMS_VAULT_ROLE_ID=$(uuid)
ENV
}

# Written whole to a private file beside the target, then linked into place: ln refuses an
# existing target, so a concurrent install cannot be overwritten either.
dir=$(dirname -- "$out")
[ -d "$dir" ] || fail "$dir is not a directory" 1
umask 077
tmp="$dir/.env.install.$$"
trap 'rm -f "$tmp"' EXIT
render > "$tmp" || fail "could not write $tmp" 1
chmod 600 "$tmp"
if ! ln "$tmp" "$out" 2>/dev/null; then
  [ -e "$out" ] && fail "$out exists; not overwriting it (its secrets are what the services were set up with). Move it away to start over." 1
  fail "could not create $out" 1
fi
rm -f "$tmp"
trap - EXIT

echo "wrote $out (mode 0600). Next: cd $dir && docker compose up -d$( [ "$image" = "coffer:$COFFER_VERSION" ] && echo ' --build')"
