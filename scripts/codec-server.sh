#!/usr/bin/env bash
# `vigil codec-server` for the local stack's Web UI, when VIGIL_CODEC_KEY_FILE
# is set: it decrypts payloads for the browser at http://$CODEC_LISTEN.
#   codec-server.sh start   start it (nothing to do without a key file)
#   codec-server.sh stop    stop it
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VIGIL_CLI=$VIGIL_REPO/bin/vigil
CODEC_PID=$VIGIL_RUN/codec-server.pid
CODEC_LOG=$VIGIL_LOGS/codec-server.log

serving() { grep -q 'serving the codec endpoint' "$CODEC_LOG"; }

start() {
	[[ -n $VIGIL_CODEC_KEY_FILE ]] || return 0
	[[ -x $VIGIL_CLI ]] || die "$VIGIL_CLI not found; run make build"
	stop >/dev/null # a changed key file or binary takes a fresh start
	: >"$CODEC_LOG"
	start_daemon codec-server "$CODEC_PID" "$CODEC_LOG" "$VIGIL_CLI" codec-server --listen "$CODEC_LISTEN"
	wait_until codec-server 10 "$CODEC_PID" "$VIGIL_CLI" "$CODEC_LOG" serving
	log "codec-server: the Web UI decrypts payloads through http://$CODEC_LISTEN"
}

stop() { stop_pid codec-server "$CODEC_PID" "$VIGIL_CLI codec-server"; }

case ${1:-} in
start) start ;;
stop) stop ;;
*) die "usage: $0 start|stop" ;;
esac
