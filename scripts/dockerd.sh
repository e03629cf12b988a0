#!/usr/bin/env bash
# A private dockerd (Debian's docker.io) for `make test-compose`: its own
# socket and exec root under /run, its data root (images, build cache) in
# the cache beside the tools so a second run reuses the images, and the
# containerd it is given (--containerd) instead of a system one. No default
# bridge and no iptables rules of its own: compose's networks are bridges it
# makes (in DOCKERD_POOL), published ports go through docker-proxy on
# 127.0.0.1. Containers here reach each other and the host only: one rule of
# ours, removed at stop, forwards nothing from those networks off them. And
# their one outside resolver is tools/nxdomain on an address of the host's
# (DNS_ADDR, on lo while dockerd runs), which says "no such name" at once:
# dockerd's DNS answers the compose network's names and forwards the rest
# (every gRPC dial looks up _grpc_config.<host>), and with no resolver that
# answers, each such lookup waits out dockerd's timeouts (temporal:7233 took
# 10 s to dial, and the namespace setup never finished).
# Builds need the host's resolvers (apt-get, the module proxy), so --dns is
# given only in the mode "isolated", for running the stack.
#   dockerd.sh start CONTAINERD_SOCKET [isolated]
#                                        start it (or reuse the running one
#                                        when in the same mode)
#   dockerd.sh stop                      stop it (the containers must be gone)
#   dockerd.sh host                      print DOCKER_HOST for it
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DOCKERD_DATA=${VIGIL_DOCKER_ROOT:-$HOME/.cache/vigil/docker}
# /run/vigil-docker-<hash of the clone>: short (unix socket paths), one per clone.
DOCKERD_RUN=/run/vigil-docker-$(printf '%s' "$VIGIL_DIR" | sha256sum | cut -c1-12)
DOCKERD_SOCK=$DOCKERD_RUN/docker.sock
DOCKERD_PID=$VIGIL_RUN/dockerd.pid
DOCKERD_LOG=$VIGIL_LOGS/dockerd.log
DOCKERD_POOL=10.216.0.0/16 # far from the node default and the tests' 10.214.0.0/16
DNS_ADDR=10.217.53.53
NXDOMAIN_BIN=$VIGIL_DIR/bin/nxdomain
NXDOMAIN_PID=$VIGIL_RUN/nxdomain.pid
# The rule, as iptables -C/-I/-D take it.
ISOLATE=(FORWARD -s "$DOCKERD_POOL" ! -d "$DOCKERD_POOL" -m comment --comment vigil-compose-dockerd -j REJECT)

start() {
	local containerd_sock=${1:?usage: dockerd.sh start CONTAINERD_SOCKET [isolated]} mode=${2:-build} dns=()
	command -v dockerd >/dev/null || die "dockerd not found; install Debian's docker.io (apt-get install docker.io)"
	[[ $mode == isolated ]] && dns=(--dns "$DNS_ADDR")
	if pid_alive "$DOCKERD_PID" "$DOCKERD_SOCK" && [[ $(cat "$DOCKERD_RUN/mode" 2>/dev/null) != "$mode" ]]; then
		stop_pid dockerd "$DOCKERD_PID" "$DOCKERD_SOCK"
	fi
	if pid_alive "$DOCKERD_PID" "$DOCKERD_SOCK"; then
		log "dockerd: already running (pid $(<"$DOCKERD_PID"), $mode)"
	else
		mkdir -p "$DOCKERD_RUN" "$DOCKERD_DATA"
		iptables -C "${ISOLATE[@]}" 2>/dev/null || iptables -I "${ISOLATE[@]}"
		ip -4 addr show dev lo | grep -qF " $DNS_ADDR/" || ip addr add "$DNS_ADDR/32" dev lo
		go build -o "$NXDOMAIN_BIN" "$VIGIL_REPO/tools/nxdomain"
		pid_alive "$NXDOMAIN_PID" "$NXDOMAIN_BIN" ||
			start_daemon nxdomain "$NXDOMAIN_PID" "$VIGIL_LOGS/nxdomain.log" "$NXDOMAIN_BIN" -listen "$DNS_ADDR:53"
		rm -f "$DOCKERD_SOCK"
		start_daemon dockerd "$DOCKERD_PID" "$DOCKERD_LOG" dockerd \
			--data-root "$DOCKERD_DATA" --exec-root "$DOCKERD_RUN/exec" \
			--pidfile "$DOCKERD_RUN/dockerd.pid" -H "unix://$DOCKERD_SOCK" \
			--containerd "$containerd_sock" \
			--bridge=none --iptables=false --ip-masq=false --log-level=warn "${dns[@]}" \
			--default-address-pool "base=$DOCKERD_POOL,size=24"
		echo "$mode" >"$DOCKERD_RUN/mode"
	fi
	wait_until dockerd 60 "$DOCKERD_PID" "$DOCKERD_SOCK" "$DOCKERD_LOG" \
		/usr/bin/docker -H "unix://$DOCKERD_SOCK" version
	log "dockerd: ready at $DOCKERD_SOCK (data root $DOCKERD_DATA)"
}

stop() {
	stop_pid dockerd "$DOCKERD_PID" "$DOCKERD_SOCK"
	# dockerd leaves mounts in its exec root (netns/default, the host's
	# network namespace): unmount them, deepest first, before removing it.
	local m
	for m in $(awk -v root="$DOCKERD_RUN/" 'index($5, root) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
		umount "$m"
	done
	rm -rf "$DOCKERD_RUN"
	stop_pid nxdomain "$NXDOMAIN_PID" "$NXDOMAIN_BIN"
	if ip -4 addr show dev lo | grep -qF " $DNS_ADDR/"; then ip addr del "$DNS_ADDR/32" dev lo; fi
	while iptables -C "${ISOLATE[@]}" 2>/dev/null; do iptables -D "${ISOLATE[@]}"; done
}

case ${1:-} in
start) start "${2:-}" "${3:-}" ;;
stop) stop ;;
host) printf 'unix://%s\n' "$DOCKERD_SOCK" ;;
*) die "usage: $0 start CONTAINERD_SOCKET [isolated]|stop|host" ;;
esac
