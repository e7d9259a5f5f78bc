# syntax=docker/dockerfile:1
#
# Latchkey container image.
#
#   docker build -t latchkey .
#   docker run --rm -p 3000:3000 --read-only --tmpfs /tmp \
#     -v latchkey-data:/var/lib/latchkey \
#     -e ISSUER=https://id.example.com -e COOKIE_KEYS=… -e KEY_ENCRYPTION_SECRET=… latchkey
#
# The image runs in production mode, so it refuses to start without an https ISSUER and the two
# secrets (see docs/deploying.md). It runs as an unprivileged numeric user, writes only to DATA_DIR
# (/var/lib/latchkey, a volume) and works with a read-only root filesystem. Before the first start
# and after each upgrade, run the migration with the same settings:
#   docker run --rm … latchkey node dist/cli/main.js migrate
#
# To pin the base image by digest: --build-arg NODE_IMAGE=node:24-bookworm-slim@sha256:…
ARG NODE_IMAGE=node:24-bookworm-slim

# --- build: compile the TypeScript sources to dist/ -------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# Install scripts are skipped: compiling needs none of them, and the `node` devDependency's script
# would download a second Node.js for a toolchain this image already has (Node 24).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# tsc is run with the image's own node (not through `npm run`, whose PATH would prefer the
# uninstalled `node` package's bin link).
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json

# --- runtime: production dependencies, compiled code, views and default settings ------------------
FROM ${NODE_IMAGE} AS runtime

ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/var/lib/latchkey

# An unprivileged user with a fixed numeric id, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 latchkey \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin latchkey \
 && mkdir -p /var/lib/latchkey \
 && chown 10001:10001 /var/lib/latchkey \
 && chmod 0700 /var/lib/latchkey

WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only. argon2's install step picks its bundled prebuilt binary (glibc x64 or
# arm64), so no compiler is needed.
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# Read at run time: config/defaults.env (setting defaults), views/ (pages and their translations)
# and package.json (the version the management API reports). Everything stays owned by root, so the
# server cannot change its own code.
COPY config ./config
COPY views ./views
COPY --from=build /src/dist ./dist

# The embedded SQLite database and development secrets live here; with MONGODB_URI and REDIS_URL set
# nothing is written at all.
VOLUME ["/var/lib/latchkey"]

USER 10001:10001
EXPOSE 3000

# The process answers /health/live whenever its event loop runs; readiness (stores reachable) is for
# the orchestrator's readiness probe at /health/ready. Slim images have no curl, so node asks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health/live', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# SIGTERM starts the graceful shutdown: readiness fails, then after SHUTDOWN_DRAIN_MS the listener
# closes and in-flight requests finish (up to SHUTDOWN_TIMEOUT_MS).
STOPSIGNAL SIGTERM
CMD ["node", "dist/main.js"]
