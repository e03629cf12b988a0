#!/bin/sh
# The worker image's entrypoint. The host's shim and runc open, on the host,
# the paths the worker names for what runs in its containers: the init of
# `init: true` (tini), the fence of movable replicas (vigil-fence) and each
# container's logger (vigil-worker itself, --logger-path). So they are put
# in the state directory, which the host shares at the same path
# (docker-compose.yml), and named there. VIGIL_NETNS_DIR and
# VIGIL_CNI_NETWORK become the flags they name; arguments go to
# vigil-worker too (e.g. --release-networks).
set -eu
bin=${VIGIL_STATE_DIR:-/var/lib/vigil}/bin
mkdir -p "$bin"
# New files renamed over the old: containers may be running the old ones.
for f in /usr/bin/tini-static /usr/local/bin/vigil-fence; do
	cp "$f" "$bin/${f##*/}.new"
	mv -f "$bin/${f##*/}.new" "$bin/${f##*/}"
done
# vigil-worker copies itself there (--logger-path).
export VIGIL_LOGGER_PATH="${VIGIL_LOGGER_PATH:-$bin/vigil-worker}"
exec /usr/local/bin/vigil-worker --init-path "$bin/tini-static" --fence-path "$bin/vigil-fence" \
	${VIGIL_NETNS_DIR:+--netns-dir "$VIGIL_NETNS_DIR"} \
	${VIGIL_CNI_NETWORK:+--cni-network "$VIGIL_CNI_NETWORK"} "$@"
