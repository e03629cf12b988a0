# syntax=docker/dockerfile:1
# vigil-worker (entrypoint), the vigil CLI and vigil-fence, static binaries on distroless.
#   docker build --build-arg VIGIL_COMMIT=$(git rev-parse --short=12 HEAD) -t vigil-worker .
# (.git is not in the build context, so the commit `vigil version` prints comes from VIGIL_COMMIT.)
FROM golang:1.26 AS build
ARG VIGIL_COMMIT=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/vigil-run/vigil/version.commit=${VIGIL_COMMIT}" -o /out/vigil-worker ./worker && \
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/vigil-run/vigil/version.commit=${VIGIL_COMMIT}" -o /out/vigil ./starter && \
	CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/vigil-fence ./fence

# The worker runs as root: containerd's socket is root-only, and the
# containers it starts are run by the host's containerd, not in this image.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/vigil-worker /out/vigil /out/vigil-fence /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/vigil-worker"]
