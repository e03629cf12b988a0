# Vigil: `make run` brings up a local stack (private containerd, Temporal dev
# server, worker) and supervises examples/demo.yaml; `make test` runs every
# check and test. State lives in .vigil/, tools in ~/.cache/vigil/bin.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VIGIL_BIN ?= $(HOME)/.cache/vigil/bin
export VIGIL_BIN
export PATH := $(VIGIL_BIN):$(PATH)

CONTAINERD_SOCK = $(shell scripts/containerd.sh address)
DEMO ?= examples/demo.yaml
IMAGE_TAR := .vigil/busybox.tar
GO_FILES = $(shell find . -name '*.go' -not -path './.git/*' -not -path './.vigil/*' -not -path '*/testdata/*')
FUZZTIME ?= 20s

# One step at a time even under -j: the steps share the local stack and
# their output should read top to bottom.
.NOTPARALLEL:

.PHONY: help deps build image run stop cluster cluster-stop cluster-deps test test-compose fmt-check vet workflowcheck fuzz-short bench bench-quick bench-scale chaos clean

help:
	@echo 'make run     start containerd, the Temporal dev server and a worker; supervise $(DEMO)'
	@echo 'make stop    stop what make run started (state stays in .vigil/)'
	@echo 'make test    gofmt, go vet, workflowcheck, a short fuzz run, and every test'
	@echo 'make test-compose  docker-compose.yml for real on Debian'"'"'s docker.io, with stand-in images (root)'
	@echo 'make cluster the production path here: PostgreSQL, a Temporal cluster (frontend 127.0.0.1:7333, Web UI :8080), two nodes'
	@echo 'make cluster-stop  stop it (state stays in .vigil/cluster/)'
	@echo 'make build   build bin/vigil, bin/vigil-worker and bin/vigil-fence'
	@echo 'make image   build the busybox image and import it into the local containerd'
	@echo 'make bench   run the benchmark harness (bench/; make bench-quick: under 5 minutes)'
	@echo 'make bench-scale  the scale harness: 100,000 replicas over 100 simulated nodes on the cluster (BENCH_SCALE_ARGS="--replicas 1000 --nodes 10")'
	@echo 'make chaos   run the chaos soak (chaos/; CHAOS_ARGS="--seed N --duration 10m")'
	@echo 'make clean   stop, then delete bin/ and .vigil/'

deps:
	@scripts/ensure-deps.sh

# The commit is stamped into `vigil version` (GOFLAGS may turn off go's own VCS stamping).
LDFLAGS = -X github.com/vigil-run/vigil/version.commit=$(shell git rev-parse --short=12 HEAD 2>/dev/null)

build:
	go build -ldflags '$(LDFLAGS)' -o bin/vigil ./starter
	go build -ldflags '$(LDFLAGS)' -o bin/vigil-worker ./worker
	CGO_ENABLED=0 go build -o bin/vigil-fence ./fence

# tools/mkimage writes a docker-archive/OCI tarball of docker.io/library/busybox:local
# built from the host's static busybox, so no registry is needed.
$(IMAGE_TAR): $(wildcard tools/mkimage/*.go internal/testimage/*.go) /bin/busybox
	@mkdir -p $(@D)
	go run ./tools/mkimage -o $@

image: $(IMAGE_TAR)
	@scripts/containerd.sh start
	ctr --address $(CONTAINERD_SOCK) --namespace vigil images import $(IMAGE_TAR)

# The CLI talks to the local dev server even when the shell points elsewhere.
run: export TEMPORAL_ADDRESS := 127.0.0.1:7233
run: export TEMPORAL_NAMESPACE := default
run: deps
	@scripts/containerd.sh start
	@scripts/temporal-dev.sh start
	@$(MAKE) --no-print-directory build image
	@scripts/worker.sh start
	@scripts/codec-server.sh start
	bin/vigil supervise -f $(DEMO)
	@echo
	@echo 'Temporal Web UI: http://localhost:8233  (workflows of $(DEMO))'
	@echo 'Stop everything: make stop'
	@echo
	bin/vigil list
	@echo
	@echo 'web is published on this host (replica 1 on 18080, replica 2 on 18081):'
	@echo '  curl http://127.0.0.1:18080/'
	@echo '  bin/vigil status demo/web-rep-1   # its IP and published ports'


stop:
	@scripts/stop.sh

# The Temporal server, temporal-sql-tool and the Web UI server, built from
# Go modules (tools/temporal-server, tools/temporal-ui) at the versions in
# .env, into $(VIGIL_BIN); the first build takes minutes, later ones nothing.
cluster-deps: deps
	@go run ./tools/cluster build

# PostgreSQL, the Temporal server as four processes, its Web UI and two
# Vigil nodes (node-a, node-b), all on 127.0.0.1; state in .vigil/cluster/.
cluster: cluster-deps build
	@go run ./tools/cluster start --worker bin/vigil-worker

cluster-stop:
	@go run ./tools/cluster stop

test: cluster-deps fmt-check vet workflowcheck fuzz-short
	@echo '==> go test ./... (unit, integration, end-to-end)'
	VIGIL_REQUIRE_INTEGRATION=1 go test ./... -count=1 -timeout 25m

# docker-compose.yml run as a user runs it (e2e/compose/test.sh): Debian's
# docker.io, the compose plugin built from its Go module (tools/compose),
# stand-in images built here under the names the file uses. Needs root.
test-compose: cluster-deps
	@e2e/compose/test.sh

fmt-check:
	@echo '==> gofmt'
	@unformatted=$$(gofmt -l $(GO_FILES)); \
	if [[ -n $$unformatted ]]; then echo "error: not gofmt-ed (run gofmt -w):" >&2; echo "$$unformatted" >&2; exit 1; fi

vet:
	@echo '==> go vet ./...'
	@go vet ./...

workflowcheck:
	@echo '==> workflowcheck ./workflows/...'
	@workflowcheck ./workflows/...

# The fuzz targets of the deployment-file parser (spec.FuzzParse) and of the
# decision function (policy.FuzzDecide). Output is shown in full only on
# failure (it names the failing input's corpus file).
fuzz = out=$$(go test ./$(1) -run '^$$' -fuzz '^$(2)$$' -fuzztime $(FUZZTIME) 2>&1) \
	|| { echo "$$out" >&2; exit 1; }; echo "$$out" | tail -n 1

fuzz-short:
	@echo '==> fuzz ./spec FuzzParse for $(FUZZTIME)'
	@$(call fuzz,spec,FuzzParse)
	@echo '==> fuzz ./policy FuzzDecide for $(FUZZTIME)'
	@$(call fuzz,policy,FuzzDecide)

# make bench also measures this commit first, in the same run, and prints the
# two side by side: the last commit before the node watch (998cf12), so the
# comparison is the node watch's. BENCH_BEFORE= leaves it out.
BENCH_BEFORE ?= 7772f12

bench: deps
	go run ./bench $(if $(BENCH_BEFORE),--before $(BENCH_BEFORE)) $(BENCH_ARGS)

bench-quick: deps
	go run ./bench --quick $(BENCH_ARGS)

# The scale harness (README, Scale): simulated nodes (tools/simnode), the
# real workflows, CLI and Temporal cluster on PostgreSQL. Not part of make test.
bench-scale: cluster-deps
	go run ./bench --phases fleet $(BENCH_SCALE_ARGS)

chaos: deps
	go run ./chaos $(CHAOS_ARGS)
	@# Issue 25 at scale: 1,000 short runs, every last line kept.
	VIGIL_LOGS_RUNS=1000 VIGIL_REQUIRE_INTEGRATION=1 go test ./e2e -run '^TestLogsKeepEveryLastLine$$' -count=1 -timeout 30m

clean: stop cluster-stop
	@# The containers' networks (addresses, port rules, namespaces, the bridge) outlive make stop, so make run resumes them.
	@if [[ -x bin/vigil-worker && -d .vigil/state ]]; then bin/vigil-worker --release-networks --state-dir .vigil/state; fi
	rm -rf bin .vigil
