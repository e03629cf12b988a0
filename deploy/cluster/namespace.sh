#!/bin/sh
# Creates the "default" namespace, which the server does not create itself.
# Vigil's search attributes are registered by the first vigil-worker
# (config.EnsureSearchAttributes). Needs the temporal CLI and
# TEMPORAL_ADDRESS. Run by `make cluster` (internal/cluster) and by
# docker-compose.yml's temporal-namespace service.
set -eu
until temporal operator cluster health --command-timeout 2s >/dev/null 2>&1; do sleep 1; done
temporal operator namespace describe -n default >/dev/null 2>&1 ||
	temporal operator namespace create -n default --retention 7d
