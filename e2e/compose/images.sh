#!/usr/bin/env bash
# Builds, in the dockerd at DOCKER_HOST, stand-ins for the images
# docker-compose.yml and the Dockerfile name, under the same names and tags:
# no registry of images is reachable here. Each comes from what the real one
# is made of:
#   debian:bookworm-slim       Debian's debootstrap (minbase), trimmed as the
#                              slim image is, then `docker import`
#   golang:<go>-bookworm       that base with the host's Go toolchain and trust store
#   postgres:<POSTGRES>        that base with Debian's postgresql-<POSTGRES>
#   temporalio/server:<T>      temporal-server, built from its Go module for
#   temporalio/admin-tools:<T> `make cluster` (tools/temporal-server), the
#   temporalio/ui:<UI>         temporal CLI and the Web UI server (tools/temporal-ui)
#   vigil-worker:local         the repo's Dockerfile, its base images as build args
# Versions come from .env. Layers are cached in dockerd's data root, so a
# second run only checks them.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$VIGIL_REPO"
: "${DOCKER_HOST:?set DOCKER_HOST to the dockerd to build in}"

DOCKER=/usr/bin/docker # Debian's client speaks the daemon's API version
export DOCKER_BUILDKIT=1
IMAGES=$VIGIL_REPO/e2e/compose/images

env_value() { sed -n "s/^$1=//p" .env; }
TEMPORAL_VERSION=$(env_value TEMPORAL_VERSION)
TEMPORAL_UI_VERSION=$(env_value TEMPORAL_UI_VERSION)
POSTGRES_VERSION=$(env_value POSTGRES_VERSION)
GO_MINOR=$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')
BASE_IMAGE=debian:bookworm-slim
GO_IMAGE=golang:$GO_MINOR-bookworm

have_image() { $DOCKER image inspect "$1" >/dev/null 2>&1; }

# build TAG CONTEXT [ARGS...]: RUN steps use the host's network (apt-get
# and the Go module proxy; the private dockerd has no default bridge).
build() {
	local tag=$1 context=$2 start=$SECONDS
	shift 2
	$DOCKER build --quiet --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$tag" "$@" "$context" >/dev/null
	log "image $tag ($((SECONDS - start)) s)"
}

# The base: the release's minimal system, without what the slim image leaves
# out (documentation, manuals, translations; dpkg keeps skipping them) and
# without the package lists and archives.
base() {
	have_image "$BASE_IMAGE" && return 0
	command -v debootstrap >/dev/null || die "debootstrap not found; apt-get install debootstrap"
	local root
	root=$(mktemp -d /var/tmp/vigil-bookworm.XXXXXX)
	# shellcheck disable=SC2064
	trap "rm -rf '$root'" RETURN
	log "debootstrap bookworm (minbase) into $root"
	debootstrap --variant=minbase bookworm "$root" >"$VIGIL_LOGS/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$VIGIL_LOGS/debootstrap.log" >&2; die "debootstrap failed; see $VIGIL_LOGS/debootstrap.log"; }
	cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<-'EOF'
		path-exclude /usr/share/doc/*
		path-include /usr/share/doc/*/copyright
		path-exclude /usr/share/man/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/locale/*
	EOF
	find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
	find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
	rm -rf "$root"/usr/share/{man,info,locale}/* "$root"/var/lib/apt/lists/* \
		"$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log
	echo 'APT::Install-Recommends "false";' >"$root/etc/apt/apt.conf.d/docker-no-recommends"
	tar -C "$root" --numeric-owner -c . | $DOCKER import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
	log "image $BASE_IMAGE (debootstrap + docker import)"
}

# context NAME FILE...: the stand-in's directory with the given binaries
# beside its Dockerfile (hard links when the cache is on the same file system).
context() {
	local name=$1 dir=$VIGIL_DIR/images/$1 f
	shift
	rm -rf "$dir"
	mkdir -p "$dir"
	cp -a "$IMAGES/$name/." "$dir/"
	for f in "$@"; do
		[[ -x $f ]] || die "$f missing; run make cluster-deps"
		ln -f "$f" "$dir/" 2>/dev/null || cp -p "$f" "$dir/"
	done
	printf '%s\n' "$dir"
}

base
golang=$(context golang)
cp -al "$(go env GOROOT)" "$golang/go" 2>/dev/null || cp -a "$(go env GOROOT)" "$golang/go"
cp /etc/ssl/certs/ca-certificates.crt "$golang/"
build "$GO_IMAGE" "$golang"
build "postgres:$POSTGRES_VERSION" "$IMAGES/postgres" --build-arg "PG_MAJOR=$POSTGRES_VERSION"
server_dir=$VIGIL_BIN/temporal-server-$TEMPORAL_VERSION
build "temporalio/server:$TEMPORAL_VERSION" "$(context temporal-server "$server_dir/temporal-server")"
build "temporalio/admin-tools:$TEMPORAL_VERSION" "$(context admin-tools "$server_dir/temporal-sql-tool" "$VIGIL_BIN/temporal")"
build "temporalio/ui:$TEMPORAL_UI_VERSION" "$(context ui "$VIGIL_BIN/temporal-ui-server-$TEMPORAL_UI_VERSION/temporal-ui-server")"
build vigil-worker:local . --build-arg "GO_IMAGE=$GO_IMAGE" \
	--build-arg "GOPROXY=$(go env GOPROXY)" \
	--build-arg "VIGIL_COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
# The images these replaced (a rebuilt worker leaves its old one untagged).
$DOCKER image prune --force >/dev/null
