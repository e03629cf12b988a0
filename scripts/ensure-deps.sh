#!/usr/bin/env bash
# Installs what `make run`, `make cluster` and `make test` need, only when it
# is missing: apt packages (one `apt-get update`, as root) and the Temporal CLI and
# workflowcheck, built with `go install` into a cache outside the clone so
# every clone reuses them. Fast (no network) when everything is present.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TEMPORAL_CLI_VERSION=v1.5.1
WORKFLOWCHECK_VERSION=v0.6.0 # latest on 2026-11-28; builds with Go 1.26

# PostgreSQL's major version for `make cluster`, pinned in .env with the
# Temporal versions.
POSTGRES_VERSION=$(sed -n 's/^POSTGRES_VERSION=//p' "$VIGIL_REPO/.env")
[[ -n $POSTGRES_VERSION ]] || die ".env: POSTGRES_VERSION missing; set it to PostgreSQL's major version, e.g. 15"

# package:command pairs; the command proves the package is usable.
APT_PACKAGES=(
	"postgresql-$POSTGRES_VERSION:/usr/lib/postgresql/$POSTGRES_VERSION/bin/postgres"
	containerd:containerd
	runc:runc
	busybox-static:busybox
	iproute2:ip
	procps:ps
	util-linux:setsid
	prometheus:prometheus # e2e: the Grafana dashboard's queries run on a real Prometheus
	# Containers that serve: the CNI plugins of bridge networks and published
	# ports (bridge, host-local, portmap, loopback in /usr/lib/cni), the
	# iptables they run, and static tini, the init of `init: true`.
	containernetworking-plugins:/usr/lib/cni/portmap
	iptables:/usr/sbin/iptables
	tini:/usr/bin/tini-static
)

missing=()
for entry in "${APT_PACKAGES[@]}"; do
	pkg=${entry%%:*}
	cmd=${entry#*:}
	if ! command -v "$cmd" >/dev/null 2>&1 ||
		[[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) != "install ok installed" ]]; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]})); then
	if ((EUID != 0)); then
		die "missing packages: ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}"
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v go >/dev/null 2>&1 || die "go not found; install Go 1.26+ (https://go.dev/dl) and put it on PATH"

# go_install BINARY PACKAGE@VERSION builds BINARY into the cache when it is
# missing. A lock keeps two concurrent makes from building it twice.
go_install() {
	local binary=$1 target=$2
	[[ -x $VIGIL_BIN/$binary ]] && return 0
	mkdir -p "$VIGIL_BIN"
	(
		flock 9
		[[ -x $VIGIL_BIN/$binary ]] && exit 0
		log "building $target into $VIGIL_BIN (first time only, takes a few minutes)"
		GOBIN=$VIGIL_BIN go install "$target"
	) 9>"$VIGIL_BIN/.install.lock"
}

go_install temporal "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION"
go_install workflowcheck "go.temporal.io/sdk/contrib/tools/workflowcheck@$WORKFLOWCHECK_VERSION"

# The distribution registry the pull tests run on 127.0.0.1 with TLS and a
# password (internal/registrytest), built from its Go module (tools/registry)
# once per version, like the Temporal server.
REGISTRY_VERSION=$(sed -n 's#^\tgithub.com/distribution/distribution/v3 \(v[^ ]*\).*#\1#p' "$VIGIL_REPO/tools/registry/go.mod")
[[ -n $REGISTRY_VERSION ]] || die "tools/registry/go.mod: no github.com/distribution/distribution/v3 requirement"
REGISTRY_BIN=$VIGIL_BIN/registry-${REGISTRY_VERSION#v}
if [[ ! -x $REGISTRY_BIN ]]; then
	mkdir -p "$VIGIL_BIN"
	(
		flock 9
		[[ -x $REGISTRY_BIN ]] && exit 0
		log "building the registry $REGISTRY_VERSION into $VIGIL_BIN (first time only, takes a few minutes)"
		cd "$VIGIL_REPO/tools/registry"
		GOWORK=off go build -trimpath -ldflags "-s -w" -o "$REGISTRY_BIN.partial" github.com/distribution/distribution/v3/cmd/registry
		mv "$REGISTRY_BIN.partial" "$REGISTRY_BIN"
	) 9>"$VIGIL_BIN/.install.lock"
fi
