#!/usr/bin/env bash
# Stops the local stack in the order that loses nothing: the worker first (so
# it does not see its containers killed and restart them), then the
# containers and containerd, then the dev server. Its database stays in
# .vigil/temporal.db: the next `make run` resumes every supervision.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$VIGIL_REPO"
scripts/worker.sh stop
scripts/codec-server.sh stop
scripts/containerd.sh stop
scripts/temporal-dev.sh stop
