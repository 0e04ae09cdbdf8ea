# group-profile-proxy: compiled JavaScript on Node 24, configured only by
# environment variables (see docs/configuration.md). The same image runs the
# mock backend: `node dist/mock-backend/cli.js`.
#
# Both stages use the same exact base image, so a rebuild gets the Node it was
# tested with; bump it in both FROM lines at once (tests/deploy.test.ts checks).

# ---- build: compile TypeScript with the full (dev) dependency tree ----------
FROM node:24.22.3-bookworm-slim AS build
WORKDIR /app
# Manifests first, so the dependency layer stays cached until they change.
# --ignore-scripts: the package's prepare script (building dist/ on install)
# cannot run before src/ is here; the build is the explicit step below.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies and dist/ only, no TypeScript ---------
FROM node:24.22.3-bookworm-slim AS runtime
# NODE_ENV=production: the dependencies that look at it run in production mode,
# and the proxy refuses to start without UPSTREAM_URL instead of serving the
# built-in mock backend's made-up profiles (MOCK_BACKEND=on asks for them).
# PORT is the default, repeated here so it visibly agrees with EXPOSE.
# ADDRESS_FILE: once listening, the proxy writes its URL there for the
# HEALTHCHECK, so the check follows --port and HOST (/tmp is writable for the
# node user, and an emptyDir in the Kubernetes manifests).
ENV NODE_ENV=production \
    PORT=8080 \
    ADDRESS_FILE=/tmp/group-profile-proxy.url
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=dev: no tsx/typescript/vitest in the image; --ignore-scripts: no
# install hooks run here (no dependency needs one). Files stay root-owned, so
# the unprivileged user below cannot modify the code it runs.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /app/dist ./dist
# Root-owned and not writable by the node user, like the code.
COPY --chmod=0755 scripts/healthcheck.sh /usr/local/bin/group-profile-proxy-healthcheck

# The official image's unprivileged user (uid 1000). Kubernetes manifests set
# runAsUser: 1000 because runAsNonRoot cannot verify a user given by name.
USER node
EXPOSE 8080
# The proxy handles SIGTERM itself: /readyz turns 503 for SHUTDOWN_DELAY_MS,
# in-flight requests finish (up to SHUTDOWN_TIMEOUT_MS), then it exits 0. Node
# runs as PID 1 without a shell in between, so the signal reaches it directly.
STOPSIGNAL SIGTERM
# GET /healthz at the URL in ADDRESS_FILE, with bash's /dev/tcp under coreutils'
# timeout (slim images have no curl or wget): a few MB and milliseconds per
# check, where a `node -e "fetch(…)"` took a whole Node process (~84 MB, ~0.4 s).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/group-profile-proxy-healthcheck"]
# V8 flags from src/server/node-flags.ts (the deploy tests keep them equal): a
# small young generation and a 20% old-generation growth step keep the resident
# set near the cached bytes (docs/performance.md, "Memory"). Neither caps the heap.
CMD ["node", "--max-semi-space-size=2", "--heap-growing-percent=20", "dist/cli.js"]
