package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/workflows"
)

// nodeDeployment runs two long-lived replicas without a network (a worker
// with another state dir keeps other network state).
const nodeDeployment = `version: v1
deployment: held
services:
  steady:
    rtype: service
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    scale: { mode: fixed, replicas: 2 }
    network: none
`

// A node is held by the worker that claimed it: a second worker with the
// same node name is refused, exit 1 with one line naming the holder's host
// and the fix, whether it has another node identity (another host) or the
// same one (a copied state dir), and the first keeps its replicas. After
// `vigil node takeover` the other identity gets the node at once and the
// first worker stops serving it.
func TestSecondWorkerOfANode(t *testing.T) {
	s := newStack(t)
	s.supervise(s.deployment("held", nodeDeployment))
	refs := []string{"held/steady-rep-1", "held/steady-rep-2"}
	before := map[string]string{}
	for _, ref := range refs {
		v := s.waitFor(ref, "Running", time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateRunning })
		before[ref] = v.SupervisedSince + "/" + itoa(v.TotalRestarts)
	}
	host, _ := os.Hostname()
	copied := filepath.Join(s.Dir, "copied-state")
	if err := os.MkdirAll(s.Network.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", s.Network.StateDir+"/.", copied).CombinedOutput(); err != nil {
		t.Fatalf("copy the state dir: %v: %s", err, out)
	}
	other := filepath.Join(s.Dir, "other-state")

	refused := func(name, stateDir, want string) {
		t.Helper()
		n := s.Workers() + 1
		if err := s.StartSecondWorker("--state-dir", stateDir); err != nil {
			t.Fatal(err)
		}
		code, exited := s.SecondWorkerExit(45 * time.Second)
		if !exited || code != 1 {
			s.KillSecondWorker()
			t.Fatalf("%s: exited %v with %d; want refused, exit 1", name, exited, code)
		}
		data, _ := os.ReadFile(s.WorkerLog(n))
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		last := lines[len(lines)-1]
		if !strings.HasPrefix(last, "vigil-worker: node e2e is held by") || !strings.Contains(last, host) || !strings.Contains(last, want) {
			t.Fatalf("%s: last line %q; want the refusal naming host %s and %q", name, last, host, want)
		}
		t.Logf("%s: %s", name, last)
	}
	refused("a copied state dir", copied, "--state-dir")
	refused("another identity", other, "vigil node takeover e2e")

	// The first worker kept the node: its replicas run as before, and an
	// exit is still seen and acted on.
	if _, done := s.WorkerExit(0); done {
		t.Fatal("the first worker exited")
	}
	for _, ref := range refs {
		v, _ := s.status(ref)
		if got := v.SupervisedSince + "/" + itoa(v.TotalRestarts); v.State != workflows.StateRunning || got != before[ref] {
			t.Fatalf("%s: %s, %s; want Running as before (%s)", ref, v.State, got, before[ref])
		}
	}

	// Takeover: the other identity gets the node at once.
	if r := s.vigil("node", "takeover", "e2e"); r.Code != 0 {
		t.Fatalf("vigil node takeover: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	n := s.Workers() + 1
	if err := s.StartSecondWorker("--state-dir", other); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, _ := os.ReadFile(s.WorkerLog(n))
		if strings.Contains(string(data), "node claimed") {
			break
		}
		if code, exited := s.SecondWorkerExit(0); exited || time.Now().After(deadline) {
			t.Fatalf("after takeover, the new identity's worker: exited %v (%d); want it to claim the node", exited, code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The old holder learns at its watch's next heartbeat and stops.
	if code, exited := s.WorkerExit(time.Minute); !exited || code != 1 {
		t.Fatalf("the taken-over worker: exited %v with %d; want exit 1", exited, code)
	}
	s.PromoteSecondWorker()
	// The new holder serves the node: a killed task is restarted.
	v, _ := s.status(refs[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Containerd.Signal(ctx, idOf(t, refs[0]).ContainerName(), syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s's task: %v", refs[0], err)
	}
	s.waitFor(refs[0], "restarted by the new holder", time.Minute, func(w workflows.StateView) bool {
		return w.State == workflows.StateRunning && w.TotalRestarts > v.TotalRestarts
	})
}
