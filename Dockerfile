# group-profile-proxy: compiled JavaScript on Node 24, configured only by
# environment variables (see README "Configuration"). The same image runs the
# mock backend: `node dist/mock-backend/cli.js`.

# ---- build: compile TypeScript with the full (dev) dependency tree ----------
FROM node:24-slim AS build
WORKDIR /app
# Manifests first, so the dependency layer stays cached until they change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies and dist/ only, no TypeScript ---------
FROM node:24-slim AS runtime
# NODE_ENV=production for the dependencies that look at it; PORT is the default,
# repeated here so EXPOSE and HEALTHCHECK visibly agree with it.
ENV NODE_ENV=production \
    PORT=8080
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=dev: no tsx/typescript/vitest in the image; --ignore-scripts: no
# install hooks run here (no dependency needs one). Files stay root-owned, so
# the unprivileged user below cannot modify the code it runs.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /app/dist ./dist

# The official image's unprivileged user (uid 1000). Kubernetes manifests set
# runAsUser: 1000 because runAsNonRoot cannot verify a user given by name.
USER node
EXPOSE 8080
# The proxy handles SIGTERM itself: /readyz turns 503 for SHUTDOWN_DELAY_MS,
# in-flight requests finish (up to SHUTDOWN_TIMEOUT_MS), then it exits 0. Node
# runs as PID 1 without a shell in between, so the signal reaches it directly.
STOPSIGNAL SIGTERM
# slim images have no curl: probe /healthz with node's own fetch.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# V8 flags from src/server/node-flags.ts (the deploy tests keep them equal): a
# small young generation and a 20% old-generation growth step keep the resident
# set near the cached bytes (README "Memory"). Neither caps the heap.
CMD ["node", "--max-semi-space-size=2", "--heap-growing-percent=20", "dist/cli.js"]
