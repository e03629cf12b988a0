#!/usr/bin/env bash
# The Vigil worker for the local stack, against the private containerd and the
# dev server, its log in .vigil/worker.log.
#   worker.sh start   start it (a running worker is reused unless bin/vigil-worker is newer)
#   worker.sh stop    stop it (SIGTERM: it finishes its current tasks)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WORKER_BIN=$VIGIL_REPO/bin/vigil-worker
WORKER_PID=$VIGIL_RUN/worker.pid
WORKER_LOG=$VIGIL_DIR/worker.log

# polling succeeds once some worker polled the workflow queue after this one
# was started (pollers of dead workers stay listed for minutes).
polling() {
	local started seen
	started=$(stat -c %Y "$WORKER_PID")
	for seen in $(temporal task-queue describe --address "$TEMPORAL_ADDRESS" --task-queue vigil \
		--task-queue-type workflow -o json --command-timeout 2s 2>/dev/null |
		sed -n 's/.*"lastAccessTime": "\([^"]*\)".*/\1/p'); do
		(($(date -d "$seen" +%s) >= started)) && return 0
	done
	return 1
}

start() {
	[[ -x $WORKER_BIN ]] || die "$WORKER_BIN not found; run make build"
	if pid_alive "$WORKER_PID" "$WORKER_BIN"; then
		if [[ $WORKER_BIN -nt $WORKER_PID ]]; then
			log "worker: binary rebuilt, restarting"
			stop
		else
			log "worker: already running (pid $(<"$WORKER_PID"))"
			return 0
		fi
	fi
	start_daemon worker "$WORKER_PID" "$WORKER_LOG" "$WORKER_BIN" \
		--address "$TEMPORAL_ADDRESS" \
		--containerd-address "$(containerd_socket)" \
		--containerd-namespace "$CONTAINERD_NAMESPACE" \
		--log-format console
	wait_until worker 30 "$WORKER_PID" "$WORKER_BIN" "$WORKER_LOG" polling
	log "worker: polling (node queue vigil-node-$(hostname))"
}

stop() { stop_pid worker "$WORKER_PID" "$WORKER_BIN"; }

case ${1:-} in
start) start ;;
stop) stop ;;
*) die "usage: $0 start|stop" ;;
esac
