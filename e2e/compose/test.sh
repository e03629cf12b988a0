#!/usr/bin/env bash
# make test-compose: docker-compose.yml run as a user runs it, on Debian's
# docker.io with the compose plugin built from its Go module, against
# stand-in images built here (images.sh; no registry of images is reachable):
#   docker compose up -d --wait; apply examples/demo.yaml from the worker
#   container (its ports moved to free ones); curl both published ports on
#   127.0.0.1; SIGKILL a demo
#   container and see it restarted; restart the worker container and see
#   supervision go on (another SIGKILL, another restart); remove the demo,
#   docker compose down -v; and check nothing is left: containers, networks,
#   volumes, iptables rules, mounts, the bridge.
# The host's containerd is a private one (scripts/containerd.sh under
# .vigil/compose), shared by dockerd and the worker as a system containerd
# is on a Docker host; the node's paths, bridge, subnet and ports are the
# test's own (the shell's variables override .env). Needs root.
# VIGIL_COMPOSE_KEEP=1 leaves a failed run's stack up for a look;
# `e2e/compose/test.sh clean` removes it.
set -euo pipefail
export VIGIL_DIR=${VIGIL_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.vigil/compose}
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$VIGIL_REPO"
((EUID == 0)) || die "make test-compose needs root (dockerd, containerd, mounts)"

DOCKER=/usr/bin/docker # Debian's client speaks the daemon's API version
passed=0 passed_all=false
step() { passed=$((passed + 1)); log "ok: $*"; }
fail() {
	printf 'FAIL: %s\n' "$*" >&2
	printf 'compose: %d passed, 1 failed\n' "$passed"
	exit 1
}

# --- what it runs on -------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if ((${#need[@]})); then
	log "installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The compose plugin, built from its Go module (tools/compose) into the
# cache, once per version, and offered to Debian's docker CLI as a plugin.
COMPOSE_VERSION=$(sed -n 's#^\tgithub.com/docker/compose/v5 \(v[^ ]*\).*#\1#p' tools/compose/go.mod)
[[ -n $COMPOSE_VERSION ]] || die "tools/compose/go.mod: no github.com/docker/compose/v5 requirement"
COMPOSE_BIN=$VIGIL_BIN/compose-${COMPOSE_VERSION#v}/docker-compose
if [[ ! -x $COMPOSE_BIN ]]; then
	log "building docker compose $COMPOSE_VERSION into $(dirname "$COMPOSE_BIN") (first time only)"
	mkdir -p "$(dirname "$COMPOSE_BIN")"
	(cd tools/compose && GOWORK=off go build -trimpath \
		-ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$COMPOSE_VERSION" \
		-o "$COMPOSE_BIN.partial" github.com/docker/compose/v5/cmd)
	mv "$COMPOSE_BIN.partial" "$COMPOSE_BIN"
fi
export DOCKER_CONFIG=$VIGIL_DIR/docker-config
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -sf "$COMPOSE_BIN" "$DOCKER_CONFIG/cli-plugins/docker-compose"

# One run at a time per machine: dockerd's data root is shared by clones.
mkdir -p "$HOME/.cache/vigil"
exec 8>"$HOME/.cache/vigil/docker.lock"
flock 8

# --- the node's settings (override .env) -----------------------------------
# Only this file's settings may reach compose and the CLI.
unset TEMPORAL_ADDRESS TEMPORAL_NAMESPACE COMPOSE_FILE COMPOSE_PROFILES COMPOSE_PROJECT_NAME
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 10000))
		ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
	done
}
NODE=$VIGIL_DIR/node
tag=$(printf '%s' "$VIGIL_DIR" | sha256sum | cut -c1-6)
export CONTAINERD_SOCKET
CONTAINERD_SOCKET=$(scripts/containerd.sh address)
export CONTAINERD_ROOT=$VIGIL_DIR/containerd/root # scripts/containerd.sh's
export VIGIL_STATE_DIR=$NODE/state VIGIL_LOG_DIR=$NODE/logs VIGIL_NETNS_DIR=$NODE/netns
export VIGIL_BRIDGE=vc-$tag VIGIL_CNI_NETWORK=vigil-compose-$tag
# A /24 of 10.215.0.0/16 (the tests' own take 10.214.0.0/16), the same for
# a clone from run to run (`test.sh clean` finds a kept run's network).
export VIGIL_SUBNET=10.215.$((0x${tag:0:2})).0/24
TEMPORAL_PORT=$(free_port) TEMPORAL_UI_PORT=$(free_port) VIGIL_METRICS_PORT=$(free_port)
export TEMPORAL_PORT TEMPORAL_UI_PORT VIGIL_METRICS_PORT
# The demo's web replicas publish WEB_PORT and WEB_PORT+1 (18080 and 18081 in
# examples/demo.yaml, which other stacks on this machine may hold).
while :; do
	WEB_PORT=$(free_port)
	ss -Htln "sport = :$((WEB_PORT + 1))" | grep -q . || break
done
# The services that run here: Prometheus and Grafana have no stand-ins
# (Grafana is not packaged by Debian), so they are left out.
SERVICES=(postgresql temporal-schema temporal temporal-namespace temporal-ui vigil-worker)

compose() { $DOCKER compose "$@"; }
vigil() { compose exec -T vigil-worker vigil "$@"; }
ctr_vigil() { ctr --address "$CONTAINERD_SOCKET" --namespace vigil "$@"; }

# cleanup removes everything the run made, in the order that loses nothing:
# the demo's containers (through Vigil), the worker, the node's networks,
# the stack, then the daemons.
cleaned=false
cleanup() {
	$cleaned && return 0
	if [[ ${VIGIL_COMPOSE_KEEP:-} == 1 && $passed_all != true ]]; then
		log "left running for a look: DOCKER_HOST=${DOCKER_HOST:-} DOCKER_CONFIG=$DOCKER_CONFIG"
		return 0
	fi
	cleaned=true
	set +e
	if $DOCKER info >/dev/null 2>&1; then
		for id in $(vigil list --deployment demo --json 2>/dev/null | grep -o '"id": *"[^"]*"' | cut -d'"' -f4); do
			vigil unsupervise "$id" --stop --volumes >/dev/null 2>&1
		done
		compose stop vigil-worker >/dev/null 2>&1
		compose run --rm --no-deps -T vigil-worker --release-networks >/dev/null 2>&1
		compose down -v --remove-orphans >/dev/null 2>&1
	fi
	scripts/dockerd.sh stop >/dev/null
	scripts/containerd.sh stop >/dev/null # kills what Vigil left in its namespace
	mountpoint -q "$VIGIL_NETNS_DIR" && umount "$VIGIL_NETNS_DIR"
	set -e
}
DOCKER_HOST=$(scripts/dockerd.sh host)
export DOCKER_HOST
if [[ ${1:-} == clean ]]; then # a run kept by VIGIL_COMPOSE_KEEP=1
	VIGIL_COMPOSE_KEEP=
	cleanup
	exit 0
fi
trap 'cleanup' EXIT

# --- the engine and the images ---------------------------------------------
scripts/containerd.sh start 8>&- # the daemons must not hold the run lock
scripts/dockerd.sh start "$CONTAINERD_SOCKET" 8>&-
compose version
start=$SECONDS
e2e/compose/images.sh
log "images ready in $((SECONDS - start)) s"
$DOCKER image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | sort

# The demo's image in the host containerd's namespace "vigil" (the step the
# compose file's header documents).
go run ./tools/mkimage -o "$VIGIL_DIR/busybox.tar"
ctr_vigil images import "$VIGIL_DIR/busybox.tar" >/dev/null

# The namespace directory on a shared mount, as / is under systemd.
mkdir -p "$VIGIL_STATE_DIR" "$VIGIL_LOG_DIR" "$VIGIL_NETNS_DIR"
if ! mountpoint -q "$VIGIL_NETNS_DIR"; then
	mount --bind "$VIGIL_NETNS_DIR" "$VIGIL_NETNS_DIR"
fi
mount --make-shared "$VIGIL_NETNS_DIR"

# --- up ----------------------------------------------------------------------
# The stack's containers resolve only the compose network's names (see
# scripts/dockerd.sh).
scripts/dockerd.sh start "$CONTAINERD_SOCKET" isolated 8>&-
start=$SECONDS
compose up -d --wait --wait-timeout 300 "${SERVICES[@]}" || {
	compose ps -a
	compose logs --tail 30
	fail "docker compose up -d --wait"
}
step "docker compose up -d --wait: $((SECONDS - start)) s"

# Search attributes the worker just registered are unknown to the server's
# caches for up to ~10 s (README, "Two things learned"): apply again then.
for ((i = 0; ; i++)); do
	out=$(sed "s/18080/$WEB_PORT/g" examples/demo.yaml | vigil apply -f - 2>&1) && break
	((i < 15)) || fail "vigil apply of examples/demo.yaml in the worker container: $out"
	sleep 2
done
printf '%s\n' "$out"
step "vigil apply from the worker container"

# serves PORT waits until 127.0.0.1:PORT answers with the demo's page.
serves() {
	local port=$1 i body
	for ((i = 0; i < 180; i++)); do
		body=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null) &&
			[[ $body == "hello from "* ]] && { printf '%s\n' "$body"; return 0; }
		sleep 1
	done
	return 1
}
for port in "$WEB_PORT" "$((WEB_PORT + 1))"; do
	body=$(serves "$port") || {
		vigil list
		vigil status demo/web-rep-1
		compose logs --tail 20 vigil-worker
		fail "curl http://127.0.0.1:$port/"
	}
	step "curl 127.0.0.1:$port: $body"
done

# restarts ID prints the replica's total restarts.
restarts() { vigil status "$1" --json | sed -n 's/.*"total_restarts": *\([0-9]*\).*/\1/p'; }
# kill_and_see_restart ID: SIGKILL the replica's container on the host and
# wait until Vigil has restarted it and it serves again.
kill_and_see_restart() {
	local id=$1 port=$2 before container i
	before=$(restarts "$id")
	container=${id//\//.} # demo/web-rep-1 runs as container demo.web-rep-1
	ctr_vigil tasks ls -q | grep -qxF -- "$container" || { ctr_vigil tasks ls; fail "no task $container in containerd"; }
	ctr_vigil tasks kill --signal SIGKILL "$container"
	for ((i = 0; i < 120; i++)); do
		[[ $(restarts "$id") -gt $before ]] && break
		sleep 1
	done
	[[ $(restarts "$id") -gt $before ]] || { vigil status "$id"; fail "$id not restarted after SIGKILL"; }
	serves "$port" >/dev/null || fail "$id restarted but 127.0.0.1:$port does not answer"
}
kill_and_see_restart demo/web-rep-1 "$WEB_PORT"
step "SIGKILL of demo/web-rep-1: restarted, serving again"

compose restart vigil-worker
for ((i = 0; i < 120; i++)); do
	[[ $($DOCKER inspect -f '{{.State.Health.Status}}' "$(compose ps -q vigil-worker)") == healthy ]] && break
	sleep 1
done
kill_and_see_restart demo/web-rep-2 "$((WEB_PORT + 1))"
step "worker container restarted: supervision goes on (SIGKILL of demo/web-rep-2: restarted)"

# --- down, and nothing left behind ------------------------------------------
for id in $(vigil list --deployment demo --json | grep -o '"id": *"[^"]*"' | cut -d'"' -f4); do
	vigil unsupervise "$id" --stop --volumes >/dev/null
done
for ((i = 0; i < 60; i++)); do
	[[ -z $(ctr_vigil containers ls -q) ]] && break
	sleep 1
done
[[ -z $(ctr_vigil containers ls -q) ]] || { ctr_vigil containers ls; fail "the demo's containers outlive unsupervise --stop"; }
compose stop vigil-worker
compose run --rm --no-deps -T vigil-worker --release-networks
start=$SECONDS
compose down -v --remove-orphans
step "docker compose down -v: $((SECONDS - start)) s"

passed_all=true
left=$($DOCKER ps -aq; $DOCKER volume ls -q; $DOCKER network ls -q --filter label=com.docker.compose.project)
[[ -z $left ]] || fail "left in dockerd: $left"
cleanup
leftover=()
ip link show "$VIGIL_BRIDGE" >/dev/null 2>&1 && leftover+=("bridge $VIGIL_BRIDGE")
iptables-save | grep -qE -- "$VIGIL_CNI_NETWORK|$VIGIL_BRIDGE|${VIGIL_SUBNET%/24}|vigil-compose-dockerd" &&
	leftover+=("iptables rules of $VIGIL_CNI_NETWORK or the private dockerd")
ip -4 -o addr show dev lo | grep -qF 10.217.53.53 && leftover+=("the private dockerd's resolver address")
grep -qF " $VIGIL_DIR" /proc/self/mountinfo && leftover+=("mounts under $VIGIL_DIR")
[[ -z $(find "$VIGIL_NETNS_DIR" -mindepth 1 2>/dev/null) ]] || leftover+=("namespaces in $VIGIL_NETNS_DIR")
pgrep -f "docker-proxy|$CONTAINERD_SOCKET|$VIGIL_DIR/bin/nxdomain" >/dev/null && leftover+=("processes of the stack")
((${#leftover[@]} == 0)) || fail "left behind: ${leftover[*]}"
step "nothing left: containers, networks, volumes, iptables rules, mounts, bridge"
printf 'compose: %d passed, 0 failed\n' "$passed"
