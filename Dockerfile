# syntax=docker/dockerfile:1
# The hold's image: TypeScript compiled in a build stage, run by Node 24 from production
# dependencies only, as an unprivileged user, with its data on a volume at /data.

# Build: every dependency (typescript, and the pinned `node` the npm scripts run on).
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# Production dependencies: none has an install script, so none runs.
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM node:24-slim
ENV NODE_ENV=production \
    HOLD_DATA_DIR=/data \
    HOLD_PORT=8080
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# Read at run time: the version (server.ts) and the lexicons (lexicons.ts), next to dist/.
COPY package.json ./
COPY lexicons ./lexicons
# uid 1000 is the base image's `node` user. Docker copies this ownership into a new named
# volume; Fly mounts its volume for the image's user.
RUN mkdir -p /data && chown 1000:1000 /data
USER 1000:1000
VOLUME ["/data"]
EXPOSE 8080
# For plain Docker (Fly runs the check in fly.toml instead); the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.HOLD_PORT || 8080) + '/xrpc/_health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form, no shell or npm in between: SIGTERM reaches Node, which drains and exits 0.
CMD ["node", "--max-semi-space-size=4", "dist/bin.js"]
