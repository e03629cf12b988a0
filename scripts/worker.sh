#!/usr/bin/env bash
# The Vigil worker for the local stack, against the private containerd and the
# dev server, its log in .vigil/worker.log and the containers' output in
# .vigil/logs/containers/, its state (named volumes, container networks) in
# .vigil/state/.
#   worker.sh start   start it (a running worker is reused unless bin/vigil-worker changed)
#   worker.sh stop    stop it (SIGTERM: it finishes its current tasks)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WORKER_BIN=$VIGIL_REPO/bin/vigil-worker
WORKER_PID=$VIGIL_RUN/worker.pid
WORKER_LOG=$VIGIL_DIR/worker.log

# polling succeeds once the worker started by this script logged that the
# SDK's pollers are up (only the log written since then is read: pollers of
# a dead worker stay listed on the server for minutes, so asking it would
# not tell the new worker from the old one).
polling() {
	tail -c "+$((WORKER_LOG_OFFSET + 1))" "$WORKER_LOG" | grep -q 'Started Worker'
}

start() {
	[[ -x $WORKER_BIN ]] || die "$WORKER_BIN not found; run make build"
	if pid_alive "$WORKER_PID" "$WORKER_BIN"; then
		# go build rewrites the file every time; only new contents count.
		if ! cmp -s "/proc/$(<"$WORKER_PID")/exe" "$WORKER_BIN"; then
			log "worker: bin/vigil-worker changed, restarting"
			stop
		else
			log "worker: already running (pid $(<"$WORKER_PID"))"
			return 0
		fi
	fi
	WORKER_LOG_OFFSET=$(stat -c %s "$WORKER_LOG" 2>/dev/null || echo 0)
	start_daemon worker "$WORKER_PID" "$WORKER_LOG" "$WORKER_BIN" \
		--address "$TEMPORAL_ADDRESS" \
		--containerd-address "$(containerd_socket)" \
		--containerd-namespace "$CONTAINERD_NAMESPACE" \
		--log-dir "$VIGIL_LOGS/containers" \
		--state-dir "$VIGIL_DIR/state" \
		--runc-root "$VIGIL_DIR/runc" \
		--log-format console \
		--metrics-address "$METRICS_ADDRESS"
	wait_until worker 30 "$WORKER_PID" "$WORKER_BIN" "$WORKER_LOG" polling
	log "worker: polling (node queue vigil-node-$(hostname))${METRICS_ADDRESS:+, metrics at http://$METRICS_ADDRESS/metrics}${VIGIL_CODEC_KEY_FILE:+, payloads encrypted}"
}

stop() { stop_pid worker "$WORKER_PID" "$WORKER_BIN"; }

case ${1:-} in
start) start ;;
stop) stop ;;
*) die "usage: $0 start|stop" ;;
esac
