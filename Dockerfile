# vigil-worker (entrypoint), the vigil CLI and vigil-fence on Debian, with what a node's
# worker runs besides itself: the CNI plugins and iptables (bridge networks,
# published ports), static tini (the init of `init: true`, and this image's
# PID 1) and curl (the compose healthcheck).
#   docker build --build-arg VIGIL_COMMIT=$(git rev-parse --short=12 HEAD) -t vigil-worker:local .
# (.git is not in the build context, so the commit `vigil version` prints
# comes from VIGIL_COMMIT.) No `# syntax=` line: that would pull a frontend
# image; the engine's own Dockerfile frontend builds this. The base images
# are build arguments so a machine without a registry can give its own.
ARG GO_IMAGE=golang:1.26-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${GO_IMAGE} AS build
ARG VIGIL_COMMIT=unknown
ARG GOPROXY
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/vigil-run/vigil/version.commit=${VIGIL_COMMIT}" -o /out/vigil-worker ./worker && \
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/vigil-run/vigil/version.commit=${VIGIL_COMMIT}" -o /out/vigil ./starter && \
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/vigil-fence ./fence

# The worker runs as root with a few capabilities (docker-compose.yml and
# the README say which and why): the containers it starts are run by the
# host's containerd, not in this image, but their networks are made here.
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends \
		containernetworking-plugins iptables tini curl \
	&& rm -rf /var/lib/apt/lists/*
COPY --from=build /out/vigil-worker /out/vigil /out/vigil-fence /usr/local/bin/
COPY deploy/worker/entrypoint.sh /usr/local/bin/vigil-worker-entrypoint
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/vigil-worker-entrypoint"]
