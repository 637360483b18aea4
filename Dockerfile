# One image for every Coffer process: `coffer api` (the default), `coffer worker`, `coffer init`
# (the compose one-shot: database roles, OpenBao) and `coffer <cli command>` (the admin CLI).
# Build: docker build -t coffer:latest .

FROM node:24.21.0-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json nest-cli.json ./
COPY scripts/build.mjs ./scripts/build.mjs
COPY apps ./apps
COPY libs ./libs
RUN node scripts/build.mjs && npm prune --omit=dev --no-audit --no-fund

FROM node:24.21.0-bookworm-slim
# openssl: the internal CA signs certificates with it (libs/tls); tini reaps and forwards signals.
RUN apt-get update \
  && apt-get install -y --no-install-recommends openssl ca-certificates tini \
  && rm -rf /var/lib/apt/lists/*
# pg_dump and pg_restore for `coffer backup` / `coffer restore` (ADR 0012): of compose's PostgreSQL
# major (17) or newer, from the PostgreSQL project's apt repository (bookworm's own is 15), whose
# signing key postgresql-common ships.
RUN apt-get update \
  && apt-get install -y --no-install-recommends postgresql-common \
  && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y \
  && apt-get install -y --no-install-recommends postgresql-client-17 \
  && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/apps ./dist/apps
COPY --from=build /src/dist/libs ./dist/libs
COPY deploy/docker/coffer /usr/local/bin/coffer
# Volumes, owned by the process user: the api's state (TLS_DIR, the bootstrap token), init's
# OpenBao keys and the AppRole secret id the unsealer renews (docs/adr/0011-unattended-restart.md).
# A new named volume takes the ownership of the directory it is mounted on.
RUN chmod 0755 /usr/local/bin/coffer \
  && mkdir -p /var/lib/coffer /var/lib/coffer-init /var/lib/coffer-approle \
  && chown node:node /var/lib/coffer /var/lib/coffer-init /var/lib/coffer-approle \
  && chmod 0700 /var/lib/coffer /var/lib/coffer-init /var/lib/coffer-approle
USER node
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/coffer"]
CMD ["api"]
