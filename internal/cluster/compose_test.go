package cluster

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// loadCompose loads docker-compose.yml as `docker compose` does, with .env
// (every ${VAR:?} must be set there, or loading fails).
func loadCompose(t *testing.T, repo string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(repo, "docker-compose.yml")},
		cli.WithWorkingDirectory(repo), cli.WithEnvFiles(), cli.WithDotEnv)
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return project
}

// TestComposeWorker checks what the worker container needs to run
// containers through the host's containerd (make test-compose runs it):
// the host's network, every path the host's shim and runc open shared at
// the same path, the namespace directory with shared propagation, dropped
// capabilities, a healthcheck whose command the image has, and a
// Dockerfile that builds without a registry's frontend image.
func TestComposeWorker(t *testing.T) {
	repo := repoRoot(t)
	project := loadCompose(t, repo)
	w, ok := project.Services["vigil-worker"]
	if !ok {
		t.Fatal("no service vigil-worker")
	}
	if w.NetworkMode != "host" {
		t.Errorf("network_mode %q, want host (the bridge and port rules must be the host's)", w.NetworkMode)
	}
	env := func(k string) string {
		if v := w.Environment[k]; v != nil && *v != "" {
			return *v
		}
		t.Fatalf("vigil-worker: %s not set", k)
		return ""
	}
	mounts := map[string]types.ServiceVolumeConfig{}
	for _, v := range w.Volumes {
		mounts[v.Target] = v
	}
	for _, k := range []string{"CONTAINERD_ADDRESS", "VIGIL_STATE_DIR", "VIGIL_LOG_DIR", "VIGIL_NETNS_DIR"} {
		path := env(k)
		m, ok := mounts[path]
		if !ok || m.Source != path {
			t.Errorf("%s=%s: not mounted from the same host path (%+v)", k, path, m)
		}
	}
	// containerd's client mounts image snapshots from containerd's root.
	if root := project.Environment["CONTAINERD_ROOT"]; root == "" || mounts[root].Source != root || !mounts[root].ReadOnly {
		t.Errorf("containerd's root (CONTAINERD_ROOT %q) must be mounted read-only at the same path: %+v", root, mounts[root])
	}
	if m := mounts[env("VIGIL_NETNS_DIR")]; m.Bind == nil || m.Bind.Propagation != "rshared" {
		t.Errorf("the namespace directory must be mounted with propagation rshared: %+v", m.Bind)
	}
	if !slices.Equal(w.CapDrop, []string{"ALL"}) {
		t.Errorf("cap_drop %v, want [ALL] and only what it needs in cap_add", w.CapDrop)
	}
	dockerfile, err := os.ReadFile(filepath.Join(repo, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if w.HealthCheck == nil || len(w.HealthCheck.Test) < 2 || w.HealthCheck.Test[0] != "CMD" ||
		!strings.Contains(string(dockerfile), " "+w.HealthCheck.Test[1]+" ") {
		t.Errorf("healthcheck %v: want CMD and a program the Dockerfile installs", w.HealthCheck)
	}
	for _, line := range strings.Split(string(dockerfile), "\n") {
		if strings.HasPrefix(strings.ToLower(line), "# syntax=") {
			t.Errorf("Dockerfile: %q pulls a frontend image; the engine's own frontend must do", line)
		}
	}
	for _, from := range []string{"FROM ${GO_IMAGE} AS build", "FROM ${BASE_IMAGE}"} {
		if !strings.Contains(string(dockerfile), from) {
			t.Errorf("Dockerfile: no %q (base images are build arguments)", from)
		}
	}
}

// TestComposeFile loads docker-compose.yml as `docker compose` does (with
// .env) and checks that it runs what the tested cluster runs: the versions
// from .env, the same schema and namespace steps, the same server
// configuration file and dynamic config, and only settings the cluster also
// sets.
func TestComposeFile(t *testing.T) {
	repo := repoRoot(t)
	project := loadCompose(t, repo)
	v, err := ReadVersions(repo)
	if err != nil {
		t.Fatal(err)
	}
	svc := func(name string) types.ServiceConfig {
		s, ok := project.Services[name]
		if !ok {
			t.Fatalf("no service %q", name)
		}
		return s
	}
	for name, image := range map[string]string{
		"postgresql":         "postgres:" + v.Postgres,
		"temporal-schema":    "temporalio/admin-tools:" + v.Temporal,
		"temporal":           "temporalio/server:" + v.Temporal,
		"temporal-namespace": "temporalio/admin-tools:" + v.Temporal,
		"temporal-ui":        "temporalio/ui:" + v.UI,
	} {
		if got := svc(name).Image; got != image {
			t.Errorf("%s: image %q, want %q (from .env)", name, got, image)
		}
	}

	// The mounted deploy/cluster is the directory the cluster uses.
	mounted := func(s types.ServiceConfig) string {
		for _, vol := range s.Volumes {
			if vol.Target == "/etc/vigil" {
				return vol.Source
			}
		}
		t.Fatalf("%s does not mount deploy/cluster at /etc/vigil", s.Name)
		return ""
	}
	for name, script := range map[string]string{"temporal-schema": "schema.sh", "temporal-namespace": "namespace.sh"} {
		s := svc(name)
		if src := mounted(s); src != filepath.Join(repo, "deploy", "cluster") {
			t.Errorf("%s mounts %s", name, src)
		}
		if want := []string{"/bin/sh", "/etc/vigil/" + script}; !slices.Equal(s.Entrypoint, want) {
			t.Errorf("%s: entrypoint %q, want %q", name, s.Entrypoint, want)
		}
		if _, err := os.Stat(filepath.Join(repo, "deploy", "cluster", script)); err != nil {
			t.Error(err)
		}
	}

	server := svc("temporal")
	mounted(server)
	// The container's address is its broadcast address (it binds 0.0.0.0),
	// then the command the cluster runs.
	want := "exec temporal-server --config-file /etc/vigil/temporal.yaml --allow-no-auth start"
	if ep := server.Entrypoint; len(ep) != 3 || ep[0] != "/bin/sh" || ep[1] != "-c" ||
		!strings.HasPrefix(ep[2], "TEMPORAL_BROADCAST_ADDRESS=$(hostname -i) ") || !strings.HasSuffix(ep[2], want) {
		t.Errorf("temporal: entrypoint %q, want /bin/sh -c with the broadcast address and %q", ep, want)
	}
	if got := server.Environment["DYNAMIC_CONFIG_FILE_PATH"]; got == nil || *got != "/etc/vigil/dynamicconfig.yaml" {
		t.Errorf("temporal: DYNAMIC_CONFIG_FILE_PATH %v", got)
	}
	// Every setting compose gives the server, the tested cluster gives it
	// too (ports aside, which the cluster must move off the defaults).
	c := &Cluster{Options: Options{Repo: repo, Dir: t.TempDir(), Ports: DefaultPorts()}}
	env, err := c.serverEnv()
	if err != nil {
		t.Fatal(err)
	}
	var clusterKeys []string
	for _, kv := range env {
		clusterKeys = append(clusterKeys, strings.SplitN(kv, "=", 2)[0])
	}
	for key := range server.Environment {
		if key != "NUM_HISTORY_SHARDS" && !slices.Contains(clusterKeys, key) {
			t.Errorf("temporal: compose sets %s, which the tested cluster does not (%v)", key, clusterKeys)
		}
	}
	if got := server.Environment["NUM_HISTORY_SHARDS"]; got == nil || *got != "4" {
		t.Errorf("temporal: NUM_HISTORY_SHARDS %v; the cluster runs the config's default, 4", got)
	}
}

func TestReadVersions(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("TEMPORAL_VERSION=1.2.3\nTEMPORAL_UI_VERSION=2.0.0\nPOSTGRES_VERSION=15\n")
	v, err := ReadVersions(dir)
	if err != nil || v != (Versions{Temporal: "1.2.3", UI: "2.0.0", Postgres: "15"}) {
		t.Fatalf("%+v %v", v, err)
	}
	write("TEMPORAL_VERSION=v1.2.3\nTEMPORAL_UI_VERSION=2.0.0\nPOSTGRES_VERSION=15\n")
	if _, err := ReadVersions(dir); err == nil || !strings.Contains(err.Error(), "TEMPORAL_VERSION") {
		t.Errorf("v prefix: %v", err)
	}
	write("TEMPORAL_VERSION=1.2.3\n")
	if _, err := ReadVersions(dir); err == nil || !strings.Contains(err.Error(), "TEMPORAL_UI_VERSION") {
		t.Errorf("missing: %v", err)
	}
	if b := v.Binaries(); !strings.HasSuffix(b.Server, "temporal-server-1.2.3/temporal-server") ||
		!strings.HasSuffix(b.UI, "temporal-ui-server-2.0.0/temporal-ui-server") {
		t.Errorf("binaries %+v", b)
	}
}

// Membership ports end up in a PostgreSQL smallint: FreePorts stays below
// 32768, and never hands out one port twice.
func TestFreePorts(t *testing.T) {
	p, err := FreePorts()
	if err != nil {
		t.Fatal(err)
	}
	all := []int{p.Postgres, p.Frontend, p.FrontendHTTP, p.FrontendMembership, p.History, p.HistoryMembership,
		p.Matching, p.MatchingMembership, p.Worker, p.WorkerMembership, p.UI}
	seen := map[int]bool{}
	for _, port := range all {
		if port <= 0 || port > 32767 || seen[port] {
			t.Fatalf("ports %+v", p)
		}
		seen[port] = true
	}
}
