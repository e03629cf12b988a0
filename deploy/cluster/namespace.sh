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
# A namespace just created is unknown to the services' caches for up to
# ~10 s: wait until it answers, so the worker started next finds it.
until temporal operator search-attribute list -n default >/dev/null 2>&1; do sleep 1; done
