# Faultline container image. Build: docker build -t faultline .
# Run:   docker run -v "$PWD/config/docker.yaml:/etc/faultline/faultline.yaml:ro" -p 8080:8080 faultline
#        (the image runs /etc/faultline/faultline.yaml by default; README "Docker" has the full example)
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:22-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY dashboard ./dashboard
COPY package.json ./
COPY config ./config
RUN mkdir -p /var/lib/faultline && chown node:node /var/lib/faultline
USER node
# Listener ports come from the config; 9901 is the admin port (loopback unless a token is set).
EXPOSE 8080 9901
ENTRYPOINT ["/app/dist/bin.js"]
CMD ["run", "--config", "/etc/faultline/faultline.yaml"]
