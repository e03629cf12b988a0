package e2e

import (
	"context"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/lease"
	"github.com/vigil-run/vigil/workflows"
)

// Node names of the two-node stack.
const (
	nodeA = "node-a"
	nodeB = "node-b"
)

// twoNodes is a stack of two nodes on this host: node-a (the stack's own
// containerd and worker) and node-b (its own containerd, network and state
// dir; its worker reaches the dev server only through b.Proxy, which the
// test cuts for a partition). check reads both containerds every 100 ms;
// unless allowDuplicates, the test fails if a replica ever ran twice.
type twoNodes struct {
	*tstack
	b               *stack.Node
	check           *stack.Checker
	allowDuplicates bool
}

// newTwoNodes starts the two nodes, each with its worker (workerArgs added
// to both command lines), and the checker.
func newTwoNodes(t *testing.T, workerArgs ...string) *twoNodes {
	t.Helper()
	requirePrerequisites(t)
	vigil, worker := currentBinaries(t)
	s := newStackOn(t, nodeA, vigil, worker, workerArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := s.AddNode(ctx, nodeB)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.StartWorker(); err != nil {
		t.Fatal(err)
	}
	n := &twoNodes{tstack: s, b: b, check: stack.Check(s.Containerd, b.Containerd)}
	// Registered after the stack's cleanup, so it runs before it (LIFO).
	t.Cleanup(func() {
		n.check.Close()
		if dups := n.check.Duplicates(); len(dups) > 0 && !n.allowDuplicates {
			t.Errorf("a replica ran on both nodes at once, %d times; first: %s", len(dups), dups[0])
		}
	})
	return n
}

// runningOn lists the containers whose task runs on node-a and on node-b.
func (n *twoNodes) runningOn() (a, b []string) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := stack.RunningTasks(ctx, n.Containerd)
	if err != nil {
		n.t.Fatal(err)
	}
	if b, err = stack.RunningTasks(ctx, n.b.Containerd); err != nil {
		n.t.Fatal(err)
	}
	return a, b
}

const pinnedOnB = `version: v1
deployment: pinned
services:
  web:
    rtype: service
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    node: node-b
    network: none
`

// pinnedRef is the replica of pinnedOnB.
const pinnedRef = "pinned/web-rep-1"

// harness checks the two-node harness itself: a replica of node-b runs in
// node-b's containerd only; while the proxy is cut node-b's worker cannot
// report its container's exit nor renew its lease, and once restored it
// does both (the replica restarts, the lease file moves on).
func (n *twoNodes) harness(t *testing.T) {
	n.supervise(n.deployment("pinned", pinnedOnB))
	name := idOf(t, pinnedRef).ContainerName()
	v := n.waitFor(pinnedRef, "Running", time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateRunning })
	onA, onB := n.runningOn()
	if slices.Contains(onA, name) || !slices.Contains(onB, name) {
		t.Fatalf("running on node-a %v, on node-b %v; want %s on node-b only", onA, onB, name)
	}

	leaseDir := lease.Dir(n.b.Network.StateDir)
	n.b.Proxy.Cut()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.b.Containerd.Signal(ctx, name, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cut, err := lease.Read(leaseDir)
	if err != nil {
		t.Fatalf("node-b's lease file: %v", err)
	}
	time.Sleep(2 * lease.Renewal)
	if w, _ := n.status(pinnedRef); w.TotalRestarts != v.TotalRestarts {
		t.Fatalf("restarts %d -> %d while node-b was cut off; want the exit unreported", v.TotalRestarts, w.TotalRestarts)
	}
	// At most the renewal in flight at the cut got through.
	if l, _ := lease.Read(leaseDir); l.Sent-cut.Sent > lease.Renewal {
		t.Fatalf("node-b's lease renewed %s after the cut", l.Sent-cut.Sent)
	}
	n.b.Proxy.Restore()
	n.waitFor(pinnedRef, "restarted once node-b is back", 2*time.Minute, func(w workflows.StateView) bool {
		return w.State == workflows.StateRunning && w.TotalRestarts > v.TotalRestarts
	})
	if l, _ := lease.Read(leaseDir); l.Sent <= cut.Sent+lease.Renewal {
		t.Fatalf("node-b's lease not renewed since the cut (sent %s, cut at %s)", l.Sent, cut.Sent)
	}
}

// checkerSeesACopy checks the checker: a second copy of the pinned
// replica, started behind Vigil's back on node-a, is seen. Last: the
// duplicates seen before it are failures.
func (n *twoNodes) checkerSeesACopy(t *testing.T) {
	if dups := n.check.Duplicates(); len(dups) > 0 {
		t.Fatalf("a replica ran on both nodes at once, %d times; first: %s", len(dups), dups[0])
	}
	n.allowDuplicates = true
	name := idOf(t, pinnedRef).ContainerName()
	ctr := func(args ...string) {
		t.Helper()
		full := append([]string{"--address", n.Containerd.Address, "--namespace", n.Containerd.Namespace}, args...)
		if out, err := exec.Command("ctr", full...).CombinedOutput(); err != nil {
			t.Fatalf("ctr %v: %v: %s", args, err, out)
		}
	}
	ctr("run", "-d", "docker.io/library/busybox:local", name, "sleep", "600")
	defer ctr("containers", "delete", name)
	defer ctr("tasks", "delete", "--force", name)
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(n.check.DuplicateContainers(), name) {
		if time.Now().After(deadline) {
			t.Fatalf("the checker saw no duplicate of %s in %d rounds", name, n.check.Rounds())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
