// Package cluster_test runs Vigil on the production path: a Temporal cluster
// on PostgreSQL (internal/cluster: the server built from source, its four
// services as separate processes, the Web UI) and two Vigil nodes, each a
// private containerd and a vigil-worker, and injects the faults a cluster
// sees: the history service SIGKILLed during a crash-loop backoff,
// PostgreSQL restarted, a node's worker SIGKILLed, the frontend restarted.
//
// The cluster lives in a temporary directory on free ports, so it never
// collides with `make cluster`. Under `make test`
// (VIGIL_REQUIRE_INTEGRATION=1) a missing prerequisite fails and missing
// Temporal binaries are built (minutes, once; make test builds them first);
// under plain `go test` the test skips.
package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/config/configtest"
	"github.com/vigil-run/vigil/internal/cluster"
	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

const (
	nodeA = "node-a"
	nodeB = "node-b"
)

// env is the running cluster and a CLI pointed at it.
type env struct {
	t   *testing.T
	c   *cluster.Cluster
	cli *stack.Stack // only its CLI helpers: Vigil, Status, WaitFor, Deployment
}

func startCluster(t *testing.T) *env {
	t.Helper()
	temporalCLI := configtest.TemporalCLI(t)
	if err := containerdtest.Prerequisites(); err != nil {
		containerdtest.Unavailable(t, err.Error())
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	v, err := cluster.ReadVersions(repo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.PostgresBin(); err != nil {
		containerdtest.Unavailable(t, err.Error())
	}
	if missing := v.Binaries().Missing(); len(missing) > 0 {
		if os.Getenv(containerdtest.RequireEnv) != "1" {
			t.Skipf("skipping integration test: Temporal server not built (%s); run `go run ./tools/cluster build` or make test", strings.Join(missing, ", "))
		}
		t.Logf("building the Temporal server (missing %v); make test builds it before the tests", missing)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		if _, err := cluster.Build(ctx, repo, v, testWriter{t}); err != nil {
			t.Fatal(err)
		}
	}
	// Short: containerd's sockets live under it.
	dir, err := os.MkdirTemp("", "vc")
	if err != nil {
		t.Fatal(err)
	}
	// PostgreSQL runs as the postgres user: it must reach its data below.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	vigil, worker, err := stack.Build(repo, bin)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := cluster.FreePorts()
	if err != nil {
		t.Fatal(err)
	}
	// The nodes' containers go on a private network, removed at the end,
	// never on the host's default one: what a run leaves there (namespaces
	// holding addresses, rules) would clash with make run's.
	network, err := containerdtest.NewNetwork(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cluster.New(cluster.Options{
		Repo: repo, Dir: filepath.Join(dir, "c"), Ports: ports,
		Nodes:       []string{nodeA, nodeB},
		Namespace:   fmt.Sprintf("vt-cluster-%d", os.Getpid()),
		VigilWorker: worker, TemporalCLI: temporalCLI,
		WorkerArgs: network.WorkerArgs(),
		Log:        testWriter{t},
	})
	if err != nil {
		_ = network.Remove()
		t.Fatal(err)
	}
	e := &env{t: t, c: c, cli: &stack.Stack{
		Options:  stack.Options{Dir: dir, VigilBin: vigil, Node: nodeA},
		HostPort: c.Address(),
	}}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []string{cluster.PartHistory, cluster.PartFrontend, cluster.VigilWorkerPart(nodeA), cluster.VigilWorkerPart(nodeB)} {
				t.Logf("%s log:\n%s", p, c.LogTail(p, 25))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop the cluster: %v", err)
		}
		if err := network.Remove(); err != nil {
			t.Errorf("remove the nodes' network: %v", err)
		}
		if !t.Failed() {
			_ = os.RemoveAll(dir)
		}
	})
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster started in %s (frontend %s, Web UI %s)", time.Since(began).Round(100*time.Millisecond), c.Address(), c.UIAddress())
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (e *env) vigil(args ...string) stack.Result {
	e.t.Helper()
	r, err := e.cli.Vigil(args...)
	if err != nil {
		e.t.Fatalf("vigil %v: %v", args, err)
	}
	return r
}

func (e *env) supervise(name, yaml string) {
	e.t.Helper()
	p, err := e.cli.Deployment(name, yaml)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.cli.Supervise(p); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) waitFor(ref, what string, limit time.Duration, cond func(workflows.StateView) bool) workflows.StateView {
	e.t.Helper()
	v, err := e.cli.WaitFor(ref, what, limit, cond)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

func (e *env) status(ref string) workflows.StateView {
	e.t.Helper()
	return e.waitFor(ref, "an answer", time.Minute, func(workflows.StateView) bool { return true })
}

// ctr runs ctr against a node's containerd.
func (e *env) ctr(node string, args ...string) string {
	e.t.Helper()
	full := append([]string{"--address", e.c.ContainerdAddress(node), "--namespace", e.c.Namespace}, args...)
	out, err := exec.Command("ctr", full...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("ctr %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// tasks maps each running container of a node to its task's PID.
func (e *env) tasks(node string) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(e.ctr(node, "tasks", "list"), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == "RUNNING" {
			out[f[0]] = f[1]
		}
	}
	return out
}

func containerName(t *testing.T, ref string) string {
	t.Helper()
	id, err := replica.ParseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	return id.ContainerName()
}

// waitContainers waits until each replica's container runs on its node (the
// state query says Running as soon as the start is decided).
func (e *env) waitContainers(placement map[string]string) {
	e.t.Helper()
	var tasks map[string]map[string]string
	if !eventually(time.Minute, func() bool {
		tasks = map[string]map[string]string{nodeA: e.tasks(nodeA), nodeB: e.tasks(nodeB)}
		for ref, node := range placement {
			if tasks[node][containerName(e.t, ref)] == "" {
				return false
			}
		}
		return true
	}) {
		e.t.Fatalf("containers not running on their nodes %v: %v", placement, tasks)
	}
}

// killContainer SIGKILLs a replica's container behind Vigil's back.
func (e *env) killContainer(node, ref string) {
	e.t.Helper()
	e.ctr(node, "tasks", "kill", "--signal", "SIGKILL", containerName(e.t, ref))
}

func running(v workflows.StateView) bool { return v.State == workflows.StateRunning }

func inBackoff(v workflows.StateView) bool {
	return v.State == workflows.StateCrashLoopBackOff && v.NextRestartAt != nil
}

func count(v workflows.StateView, typ workflows.EventType) int {
	n := 0
	for _, ev := range v.Events {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

const image = `{ name: docker.io/library/busybox:local, pull_policy: never }`

// spread places "web" on node-a by default (vigil supervise --node node-a),
// "db" on node-b by its node field, and a crash-looping "cron" on node-b.
const spread = `version: v1
deployment: spread
services:
  web:
    image: ` + image + `
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    scale: { mode: fixed, replicas: 2 }
  db:
    node: node-b
    image: ` + image + `
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
  cron:
    node: node-b
    image: ` + image + `
    command: { entrypoint: ["/bin/sh", "-c"], args: ["sleep 1; exit 3"] }
    errors:
      on_panic: { action: restart, max_restarts: 2, restart_window: 300s, backoff: 30s, poll_interval: 1s }
`

// TestCluster runs one cluster through every fault in turn (starting a
// cluster costs tens of seconds; each step uses replicas of its own).
func TestCluster(t *testing.T) {
	e := startCluster(t)
	e.supervise("spread", spread)

	t.Run("deployment spread over both nodes", func(t *testing.T) {
		e.t = t
		for ref, node := range map[string]string{"spread/web-rep-1": nodeA, "spread/web-rep-2": nodeA, "spread/db-rep-1": nodeB} {
			v := e.waitFor(ref, "Running", 2*time.Minute, running)
			if v.Node != node {
				t.Errorf("%s runs on %q, want %s", ref, v.Node, node)
			}
		}
		// containerd's own view: each container on its node, and only there.
		e.waitContainers(map[string]string{"spread/web-rep-1": nodeA, "spread/web-rep-2": nodeA, "spread/db-rep-1": nodeB})
		a := e.tasks(nodeA)
		if _, ok := a[containerName(t, "spread/db-rep-1")]; ok {
			t.Errorf("db runs on node-a too: %v", a)
		}
		list := e.vigil("list", "--deployment", "spread")
		if list.Code != 0 || !regexpLine(list.Stdout, `^spread/db-rep-1\s+node-b\s`) || !regexpLine(list.Stdout, `^spread/web-rep-1\s+node-a\s`) {
			t.Errorf("vigil list: exit %d\n%s%s", list.Code, list.Stdout, list.Stderr)
		}
		st := e.vigil("status", "spread/db-rep-1")
		if st.Code != 0 || !regexpLine(st.Stdout, `^NODE\s+node-b$`) {
			t.Errorf("vigil status: exit %d\n%s%s", st.Code, st.Stdout, st.Stderr)
		}
		v := e.waitFor("spread/cron-rep-1", "CrashLoopBackOff", 3*time.Minute, inBackoff)
		if v.TotalRestarts != 2 || v.Node != nodeB {
			t.Errorf("cron at backoff: %d restarts on %s; want 2 on node-b", v.TotalRestarts, v.Node)
		}
		// Vigil's search attributes, registered by the worker, filter on the
		// SQL visibility store.
		// SQL visibility, updated asynchronously: give it a few seconds.
		var bo stack.Result
		eventually(30*time.Second, func() bool {
			bo = e.vigil("list", "--state", "CrashLoopBackOff")
			return strings.Contains(bo.Stdout, "spread/cron-rep-1")
		})
		if bo.Code != 0 || !strings.Contains(bo.Stdout, "spread/cron-rep-1") || strings.Contains(bo.Stdout, "web-rep") {
			t.Errorf("vigil list --state CrashLoopBackOff: exit %d\n%s%s", bo.Code, bo.Stdout, bo.Stderr)
		}
	})

	t.Run("history killed during a backoff", func(t *testing.T) {
		e.t = t
		e.supervise("hist", strings.ReplaceAll(strings.ReplaceAll(spread, "deployment: spread", "deployment: hist"), "backoff: 30s", "backoff: 25s"))
		before := e.waitFor("hist/cron-rep-1", "CrashLoopBackOff", 3*time.Minute, inBackoff)
		web := e.waitFor("hist/web-rep-1", "Running", time.Minute, running)
		e.waitContainers(map[string]string{"hist/web-rep-1": nodeA})
		deadline, ok := before.NextRestart()
		if !ok {
			t.Fatalf("CrashLoopBackOff without a restart time: %+v", before)
		}
		if err := e.c.Kill(cluster.PartHistory); err != nil {
			t.Fatal(err)
		}
		t.Logf("history SIGKILLed; backoff until %s", deadline.Format(time.RFC3339Nano))
		// An exit while history is down: handled once it is back.
		e.killContainer(nodeA, "hist/web-rep-1")
		time.Sleep(5 * time.Second)
		startPart(t, func(ctx context.Context) error { return e.c.StartServer(ctx, cluster.PartHistory) })

		after := e.waitFor("hist/cron-rep-1", "the start after the backoff", 3*time.Minute, func(v workflows.StateView) bool {
			return v.TotalRestarts > before.TotalRestarts
		})
		var restarted *workflows.Event
		for i := range after.Events {
			if ev := after.Events[i]; ev.Type == workflows.EventContainerRestarted && !ev.Time.Before(deadline.Add(-time.Second)) {
				restarted = &after.Events[i]
				break
			}
		}
		if restarted == nil || restarted.Time.Before(deadline) {
			t.Errorf("no restart at or after the backoff deadline %s: events %+v", deadline, after.Events)
		}
		w := e.waitFor("hist/web-rep-1", "the restart of the container killed during the outage", 2*time.Minute, func(v workflows.StateView) bool {
			return v.TotalRestarts >= 1 && running(v)
		})
		time.Sleep(3 * time.Second) // a doubled handling would show by now
		w = e.status("hist/web-rep-1")
		if w.TotalRestarts != web.TotalRestarts+1 || count(w, workflows.EventContainerRestarted) != count(web, workflows.EventContainerRestarted)+1 {
			t.Errorf("web-rep-1 after the outage: %d restarts, events %+v; want exactly one more restart", w.TotalRestarts, w.Events)
		}
	})

	t.Run("PostgreSQL restarted", func(t *testing.T) {
		e.t = t
		e.supervise("pg", strings.ReplaceAll(spread, "deployment: spread", "deployment: pg"))
		web := e.waitFor("pg/web-rep-1", "Running", 2*time.Minute, running)
		db := e.waitFor("pg/db-rep-1", "Running", 2*time.Minute, running)
		cron := e.waitFor("pg/cron-rep-1", "CrashLoopBackOff", 3*time.Minute, inBackoff)
		e.waitContainers(map[string]string{"pg/web-rep-1": nodeA, "pg/db-rep-1": nodeB})
		listed := listCount(t, e)
		if err := e.c.StopPart(cluster.PartPostgres); err != nil {
			t.Fatal(err)
		}
		t.Log("PostgreSQL stopped")
		e.killContainer(nodeB, "pg/db-rep-1")
		time.Sleep(5 * time.Second)
		startPart(t, e.c.StartPostgres)
		t.Log("PostgreSQL started again")

		d := e.waitFor("pg/db-rep-1", "the restart of the container killed while PostgreSQL was down", 3*time.Minute, func(v workflows.StateView) bool {
			return v.TotalRestarts >= 1 && running(v)
		})
		time.Sleep(3 * time.Second)
		d = e.status("pg/db-rep-1")
		if d.TotalRestarts != db.TotalRestarts+1 {
			t.Errorf("db-rep-1: %d restarts after one kill, want %d", d.TotalRestarts, db.TotalRestarts+1)
		}
		w := e.status("pg/web-rep-1")
		if w.TotalRestarts != web.TotalRestarts || w.SupervisedSince != web.SupervisedSince || !running(w) {
			t.Errorf("web-rep-1 changed: %+v, was %+v", w, web)
		}
		c := e.waitFor("pg/cron-rep-1", "the restart after the backoff", 3*time.Minute, func(v workflows.StateView) bool {
			return v.TotalRestarts > cron.TotalRestarts
		})
		if c.TotalRestarts != cron.TotalRestarts+1 && c.State != workflows.StateCrashLoopBackOff {
			t.Errorf("cron-rep-1: %d restarts after one backoff (was %d)", c.TotalRestarts, cron.TotalRestarts)
		}
		if n := listCount(t, e); n != listed {
			t.Errorf("vigil list shows %d replicas after the restart, %d before", n, listed)
		}
	})

	t.Run("node-b's worker killed", func(t *testing.T) {
		e.t = t
		e.supervise("nodes", strings.ReplaceAll(strings.ReplaceAll(spread, "deployment: spread", "deployment: nodes"), "max_restarts: 2", "max_restarts: 100"))
		for _, ref := range []string{"nodes/web-rep-1", "nodes/web-rep-2", "nodes/db-rep-1"} {
			e.waitFor(ref, "Running", 2*time.Minute, running)
		}
		e.waitContainers(map[string]string{"nodes/web-rep-1": nodeA, "nodes/web-rep-2": nodeA, "nodes/db-rep-1": nodeB})
		webBefore := []workflows.StateView{e.status("nodes/web-rep-1"), e.status("nodes/web-rep-2")}
		tasksA := e.tasks(nodeA)
		if err := e.c.Kill(cluster.VigilWorkerPart(nodeB)); err != nil {
			t.Fatal(err)
		}
		t.Log("node-b's worker SIGKILLed")
		e.killContainer(nodeB, "nodes/db-rep-1")
		time.Sleep(8 * time.Second)
		// node-a's replicas are untouched: same containers, same counts.
		for i, ref := range []string{"nodes/web-rep-1", "nodes/web-rep-2"} {
			v := e.status(ref)
			if !running(v) || v.TotalRestarts != webBefore[i].TotalRestarts {
				t.Errorf("%s while node-b is down: %s with %d restarts, was Running with %d", ref, v.State, v.TotalRestarts, webBefore[i].TotalRestarts)
			}
		}
		nowA := e.tasks(nodeA)
		for _, ref := range []string{"nodes/web-rep-1", "nodes/web-rep-2"} {
			name := containerName(t, ref)
			if nowA[name] == "" || nowA[name] != tasksA[name] {
				t.Errorf("%s's container on node-a changed: pid %q, was %q", ref, nowA[name], tasksA[name])
			}
		}
		startPart(t, func(ctx context.Context) error { return e.c.StartVigilWorker(ctx, nodeB) })
		t.Log("node-b's worker started again")
		d := e.waitFor("nodes/db-rep-1", "recovery on node-b", 3*time.Minute, func(v workflows.StateView) bool {
			return v.TotalRestarts >= 1 && running(v)
		})
		if d.Node != nodeB {
			t.Errorf("db-rep-1 recovered on %q", d.Node)
		}
		if _, ok := e.tasks(nodeB)[containerName(t, "nodes/db-rep-1")]; !ok {
			t.Errorf("db-rep-1 has no running container on node-b")
		}
		time.Sleep(3 * time.Second)
		if d = e.status("nodes/db-rep-1"); d.TotalRestarts != 1 {
			t.Errorf("db-rep-1: %d restarts after one kill, want 1", d.TotalRestarts)
		}
	})

	t.Run("frontend restarted", func(t *testing.T) {
		e.t = t
		if err := e.c.StopPart(cluster.PartFrontend); err != nil {
			t.Fatal(err)
		}
		r := e.vigil("list", "--timeout", "5s")
		msg := strings.TrimSpace(r.Stderr)
		if r.Code == 0 || msg == "" || strings.Contains(msg, "\n") || !strings.Contains(msg, e.c.Address()) {
			t.Errorf("vigil list with the frontend down: exit %d, stderr %q; want one line naming %s", r.Code, r.Stderr, e.c.Address())
		}
		t.Logf("with the frontend down: %s", msg)
		startPart(t, func(ctx context.Context) error { return e.c.StartServer(ctx, cluster.PartFrontend) })
		var last stack.Result
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if last = e.vigil("list", "--deployment", "spread"); last.Code == 0 {
				break
			}
			time.Sleep(time.Second)
		}
		if last.Code != 0 || !strings.Contains(last.Stdout, "spread/web-rep-1") {
			t.Errorf("vigil list after the frontend is back: exit %d\n%s%s", last.Code, last.Stdout, last.Stderr)
		}
	})
}

// eventually polls cond until it holds or limit passes (a bound on a broken
// run, not a performance assertion).
func eventually(limit time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(limit); ; time.Sleep(500 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func startPart(t *testing.T, start func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := start(ctx); err != nil {
		t.Fatal(err)
	}
}

// listCount is the number of replicas `vigil list` shows.
func listCount(t *testing.T, e *env) int {
	t.Helper()
	r := e.vigil("list", "--counts", "--json")
	var counts map[string]int
	if err := json.Unmarshal([]byte(r.Stdout), &counts); err != nil || r.Code != 0 {
		t.Fatalf("vigil list --counts --json: exit %d, %v\n%s%s", r.Code, err, r.Stdout, r.Stderr)
	}
	return counts["total"]
}

// regexpLine reports whether a line of text matches pattern.
func regexpLine(text, pattern string) bool {
	return regexp.MustCompile("(?m)" + pattern).MatchString(text)
}
