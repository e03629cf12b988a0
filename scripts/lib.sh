# Shared paths and helpers for the local stack. Source it; do not run it.
# Everything the stack writes lives under .vigil/ in the clone, except the
# containerd socket when the clone's path is too long for a unix socket.

set -euo pipefail

VIGIL_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VIGIL_DIR=${VIGIL_DIR:-$VIGIL_REPO/.vigil}
VIGIL_LOGS=$VIGIL_DIR/logs
VIGIL_RUN=$VIGIL_DIR/run
VIGIL_BIN=${VIGIL_BIN:-$HOME/.cache/vigil/bin}
export PATH="$VIGIL_BIN:$PATH"

TEMPORAL_IP=127.0.0.1
TEMPORAL_PORT=7233
TEMPORAL_UI_PORT=8233
TEMPORAL_ADDRESS=$TEMPORAL_IP:$TEMPORAL_PORT

# The worker's /metrics, /healthz and /readyz (VIGIL_METRICS_ADDRESS= turns
# them off).
METRICS_ADDRESS=${VIGIL_METRICS_ADDRESS-127.0.0.1:9464}

# Payload encryption: with VIGIL_CODEC_KEY_FILE set, the worker and the CLI
# encrypt (they read the variable themselves), `vigil codec-server` serves
# the Web UI's codec endpoint here and the dev server's UI is pointed at it.
VIGIL_CODEC_KEY_FILE=${VIGIL_CODEC_KEY_FILE:-}
CODEC_LISTEN=127.0.0.1:8088

# Namespace the worker and `make image` use inside the private containerd.
CONTAINERD_NAMESPACE=vigil

log() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# containerd_socket prints the private containerd's socket path. Unix socket
# paths are limited to 108 bytes and containerd also creates "<sock>.ttrpc",
# so a long clone path moves the socket to /run/vigil-<hash of the clone>/.
containerd_socket() {
	local sock=$VIGIL_DIR/containerd/containerd.sock
	if (( ${#sock} + 6 > 100 )); then
		local hash
		hash=$(printf '%s' "$VIGIL_DIR" | sha256sum | cut -c1-12)
		sock=/run/vigil-$hash/containerd.sock
	fi
	printf '%s\n' "$sock"
}

# pid_alive PIDFILE MARKER succeeds when the pid file names a live process
# whose command line contains MARKER (so a recycled pid is never mistaken
# for ours).
pid_alive() {
	local pidfile=$1 marker=$2 pid
	[[ -s $pidfile ]] || return 1
	pid=$(<"$pidfile")
	[[ -r /proc/$pid/cmdline ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}

# stop_pid NAME PIDFILE MARKER sends SIGTERM, waits up to 15 s, then SIGKILL.
stop_pid() {
	local name=$1 pidfile=$2 marker=$3 pid i
	if ! pid_alive "$pidfile" "$marker"; then
		rm -f "$pidfile"
		log "$name: not running"
		return 0
	fi
	pid=$(<"$pidfile")
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		pid_alive "$pidfile" "$marker" || break
		sleep 0.1
	done
	if pid_alive "$pidfile" "$marker"; then
		log "$name: still running after 15s, sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	rm -f "$pidfile"
	log "$name: stopped (pid $pid)"
}

# start_daemon NAME PIDFILE LOGFILE CMD... runs CMD detached from the
# terminal and from make, so it outlives the calling shell.
start_daemon() {
	local name=$1 pidfile=$2 logfile=$3
	shift 3
	mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
	setsid "$@" </dev/null >>"$logfile" 2>&1 &
	local pid=$! i
	echo "$pid" >"$pidfile"
	# Until the child has exec'd, its /proc cmdline is this script's, and
	# pid_alive would take a starting daemon for a dead one.
	for ((i = 0; i < 50; i++)); do
		[[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" != "$(readlink "/proc/$$/exe")" ]] && break
		sleep 0.1
	done
	log "$name: started (pid $pid, log ${logfile#"$VIGIL_REPO"/})"
}

# wait_until NAME SECONDS PIDFILE MARKER LOGFILE CMD... polls CMD until it
# succeeds, failing early (with the log's tail) when the daemon died.
wait_until() {
	local name=$1 seconds=$2 pidfile=$3 marker=$4 logfile=$5 i
	shift 5
	for ((i = 0; i < seconds * 5; i++)); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		if ! pid_alive "$pidfile" "$marker"; then
			tail -n 20 "$logfile" >&2 || true
			die "$name exited during startup; see ${logfile#"$VIGIL_REPO"/}"
		fi
		sleep 0.2
	done
	tail -n 20 "$logfile" >&2 || true
	die "$name not ready after ${seconds}s; see ${logfile#"$VIGIL_REPO"/}"
}
