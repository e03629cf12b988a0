#!/usr/bin/env bash
# The Temporal dev server for the local stack, its state in .vigil/temporal.db
# so workflows (and their timers) survive a restart.
#   temporal-dev.sh start   start it (or reuse the running one) and wait until healthy
#   temporal-dev.sh stop    stop it
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TEMPORAL_DB=$VIGIL_DIR/temporal.db
TEMPORAL_PID=$VIGIL_RUN/temporal.pid
TEMPORAL_LOG=$VIGIL_LOGS/temporal.log

healthy() {
	temporal operator cluster health --address "$TEMPORAL_ADDRESS" --command-timeout 2s 2>/dev/null | grep -q SERVING
}

start() {
	command -v temporal >/dev/null 2>&1 || die "temporal CLI not found in $VIGIL_BIN; run scripts/ensure-deps.sh"
	local codec=()
	if [[ -n $VIGIL_CODEC_KEY_FILE ]]; then
		# The UI asks scripts/codec-server.sh's endpoint to decrypt payloads.
		codec=(--ui-codec-endpoint "http://$CODEC_LISTEN")
	fi
	if pid_alive "$TEMPORAL_PID" "$TEMPORAL_DB"; then
		log "temporal: already running (pid $(<"$TEMPORAL_PID")); make stop first to change its --ui-codec-endpoint"
	elif healthy; then
		die "another Temporal server already listens on $TEMPORAL_ADDRESS; stop it first (it is not ours to stop)"
	else
		# The flags after the search attributes are internal/stack's
		# DevServerArgs (a test keeps the two the same): eager activity
		# execution, and SQLite in WAL mode with every commit synced (as
		# durable as the default journal, and a crash storm's writes do not
		# queue behind reads).
		start_daemon temporal "$TEMPORAL_PID" "$TEMPORAL_LOG" \
			temporal server start-dev \
			--db-filename "$TEMPORAL_DB" \
			--ip "$TEMPORAL_IP" --port "$TEMPORAL_PORT" --ui-port "$TEMPORAL_UI_PORT" \
			--namespace default \
			--search-attribute VigilState=Keyword \
			--search-attribute VigilService=Keyword \
			--search-attribute VigilDeployment=Keyword \
			--search-attribute VigilNode=Keyword \
			--dynamic-config-value system.enableActivityEagerExecution=true \
			--sqlite-pragma journal_mode=WAL \
			--sqlite-pragma synchronous=FULL \
			--log-level warn \
			"${codec[@]}"
	fi
	wait_until temporal 60 "$TEMPORAL_PID" "$TEMPORAL_DB" "$TEMPORAL_LOG" healthy
	log "temporal: ready at $TEMPORAL_ADDRESS, Web UI http://localhost:$TEMPORAL_UI_PORT"
}

stop() { stop_pid temporal "$TEMPORAL_PID" "$TEMPORAL_DB"; }

case ${1:-} in
start) start ;;
stop) stop ;;
*) die "usage: $0 start|stop" ;;
esac
