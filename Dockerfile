# pixtable: decoded-image cache server.
#   docker build -t pixtable .
#   docker run -p 3000:3000 -v pixtable-data:/storage pixtable
# Configuration is by environment variables (PIXTABLE_*, PORT, HOST): see README.md / docs/docker.md.

# ---- build: native addon (flock, posix_fallocate), mmap-io from source, TypeScript ----
# Node 24, the active LTS (the suite runs on it too: .ci/node24).
FROM node:24-bookworm AS build
WORKDIR /app
# node-gyp finds the headers of the running Node here instead of downloading them.
# mmap-io compiles from source: node-pre-gyp reads build_from_source from the environment, so its
# prebuilt-binary host is never asked (npm warns about the setting, in this build stage only: the
# runtime stage below does not carry it). Node 24's V8 headers need C++20; mmap-io's binding.gyp asks for C++17, and
# CXXFLAGS come last on the compiler's command line, so the later -std wins.
ENV npm_config_nodedir=/usr/local \
    npm_config_build_from_source=true \
    CXXFLAGS=-std=c++20
# Dependencies first, so the layer is reused until package-lock.json changes. Scripts are run
# explicitly below: mmap-io compiles from source, sharp needs no script (its libvips comes in the
# @img/* packages).
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm rebuild mmap-io --foreground-scripts \
 && test -f node_modules/mmap-io/build/Release/mmap_io.node
COPY native/binding.gyp native/pixtable_native.c native/
RUN npm run install
COPY tsconfig.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && test -f node_modules/mmap-io/build/Release/mmap_io.node \
 && test -d node_modules/@img/sharp-linux-x64

# ---- runtime: production dependencies, compiled JavaScript, the addon, the web page ----
FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    PIXTABLE_STORAGE=/storage \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/native/build/Release/pixtable_native.node ./native/build/Release/
COPY --from=build /app/dist/src ./dist/src
COPY src/web ./src/web
RUN mkdir -p /storage && chown node:node /storage \
 && ln -s /app/dist/src/cli/main.js /usr/local/bin/pixtable && chmod +x /app/dist/src/cli/main.js
USER node
VOLUME /storage
EXPOSE 3000
# No curl in the slim image: Node's fetch asks /healthz (sharp loads, storage writable).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: node is PID 1's only child of the entrypoint's exec, so SIGTERM reaches the server,
# which drains in-flight requests and flushes the index before exiting.
CMD ["node", "dist/src/cli/main.js", "serve"]
