#!/usr/bin/env bash
# A private containerd for the local stack: own root, state, socket and
# config under .vigil/, so it never touches a system containerd.
#   containerd.sh start    start it (or reuse the running one) and wait until ready
#   containerd.sh stop     kill the tasks in the vigil namespace, then stop it
#   containerd.sh address  print the socket path
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CTRD_DIR=$VIGIL_DIR/containerd
CTRD_CONFIG=$CTRD_DIR/config.toml
CTRD_PID=$VIGIL_RUN/containerd.pid
CTRD_LOG=$VIGIL_LOGS/containerd.log
CTRD_SOCK=$(containerd_socket)

ctr_vigil() { ctr --address "$CTRD_SOCK" --namespace "$CONTAINERD_NAMESPACE" "$@"; }

write_config() {
	mkdir -p "$CTRD_DIR/root" "$CTRD_DIR/state" "$CTRD_DIR/opt" "$(dirname "$CTRD_SOCK")"
	# Version 2 is the newest format containerd 1.6 reads (and 1.7/2.x still
	# accept). CRI is off (nothing here talks to Kubernetes), and so is
	# devmapper, which only warns when it is not configured.
	cat >"$CTRD_CONFIG" <<CONFIG
version = 2
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$CTRD_SOCK"

[ttrpc]
  address = ""

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD_DIR/opt"
CONFIG
}

start() {
	if pid_alive "$CTRD_PID" "$CTRD_CONFIG"; then
		log "containerd: already running (pid $(<"$CTRD_PID"), socket $CTRD_SOCK)"
	else
		# A socket left by a killed containerd makes the new one fail to bind.
		rm -f "$CTRD_SOCK" "$CTRD_SOCK.ttrpc"
		write_config
		start_daemon containerd "$CTRD_PID" "$CTRD_LOG" containerd --config "$CTRD_CONFIG"
	fi
	wait_until containerd 30 "$CTRD_PID" "$CTRD_CONFIG" "$CTRD_LOG" ctr --address "$CTRD_SOCK" version
	printf '%s\n' "$CTRD_SOCK" >"$VIGIL_DIR/containerd.address"
	log "containerd: ready at $CTRD_SOCK"
}

# kill_tasks stops the containers' processes so no shim or workload outlives
# the stack. The worker must already be stopped, or it would restart them.
kill_tasks() {
	local task i
	for task in $(ctr_vigil tasks list -q 2>/dev/null); do
		ctr_vigil tasks kill --signal SIGKILL "$task" >/dev/null 2>&1 || true
	done
	for task in $(ctr_vigil tasks list -q 2>/dev/null); do
		for ((i = 0; i < 50; i++)); do
			ctr_vigil tasks delete "$task" >/dev/null 2>&1 && break
			sleep 0.1
		done
		log "containerd: stopped container $task"
	done
}

stop() {
	if pid_alive "$CTRD_PID" "$CTRD_CONFIG"; then
		kill_tasks
	fi
	stop_pid containerd "$CTRD_PID" "$CTRD_CONFIG"
	rm -f "$VIGIL_DIR/containerd.address" "$CTRD_SOCK" "$CTRD_SOCK.ttrpc"
	if [[ $CTRD_SOCK == /run/vigil-* ]]; then
		rmdir "$(dirname "$CTRD_SOCK")" 2>/dev/null || true
	fi
}

case ${1:-} in
start) start ;;
stop) stop ;;
address) printf '%s\n' "$CTRD_SOCK" ;;
*) die "usage: $0 start|stop|address" ;;
esac
