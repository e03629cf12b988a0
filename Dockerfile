# syntax=docker/dockerfile:1
# vigil-worker (entrypoint) and the vigil CLI, static binaries on distroless.
#   docker build -t vigil-worker .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/vigil-worker ./worker && \
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/vigil ./starter

# The worker runs as root: containerd's socket is root-only, and the
# containers it starts are run by the host's containerd, not in this image.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/vigil-worker /out/vigil /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/vigil-worker"]
