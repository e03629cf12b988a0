package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/workflows"
)

// moving is a service placed over both nodes (lost_after 15 s, the least)
// and one pinned to node-b.
func moving(replicas int) string {
	return fmt.Sprintf(`version: v1
deployment: moving
services:
  web:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    scale: { mode: fixed, replicas: %d }
    placement: { nodes: [node-a, node-b] }
    reschedule: { lost_after: 15s }
    update: { min_ready: 1s }
    stop_grace: 1s
    network: none
  pin:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    node: node-b
    reschedule: { lost_after: 15s }
    network: none
`, replicas)
}

// movedTo waits until ref runs on node after a move (Rescheduled) and
// returns how long that took from since.
func (n *twoNodes) movedTo(ref, node string, since time.Time) time.Duration {
	n.t.Helper()
	n.waitFor(ref, "Running on "+node+" after a move", 90*time.Second, func(v workflows.StateView) bool {
		return v.State == workflows.StateRunning && v.Node == node && countEvents(v, workflows.EventRescheduled) > 0
	})
	took := time.Since(since)
	name := idOf(n.t, ref).ContainerName()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	onA, err := stack.RunningTasks(ctx, n.Containerd)
	if err != nil {
		n.t.Fatal(err)
	}
	onB, err := stack.RunningTasks(ctx, n.b.Containerd)
	if err != nil {
		onB = nil // node-b's containerd is down: nothing runs there
	}
	if !slices.Contains(onA, name) || slices.Contains(onB, name) {
		n.t.Fatalf("%s: running on node-a %v, on node-b %v; want on node-a only", ref, onA, onB)
	}
	return took
}

// A lost node's movable replicas move to the other node, and its pinned
// one shows NodeLost: first node-b partitioned (its worker cut off from the
// server), then node-b lost (worker, containerd, shims and containers
// SIGKILLed), node-b back after each; then node-a drained. The returning
// node removes the containers of replicas that moved, and nothing ever
// runs on both nodes (the checker, throughout).
func TestLostNodeReplicasMove(t *testing.T) {
	n := newTwoNodes(t)
	n.supervise(n.deployment("moving", moving(2)))
	const onA, onB, pin = "moving/web-rep-1", "moving/web-rep-2", "moving/pin-rep-1"
	for ref, node := range map[string]string{onA: nodeA, onB: nodeB, pin: nodeB} {
		n.waitFor(ref, "Running on "+node, time.Minute, func(v workflows.StateView) bool {
			return v.State == workflows.StateRunning && v.Node == node
		})
	}

	// A partition: node-b's replica moves once the lease is 15 s old.
	cut := time.Now()
	n.b.Proxy.Cut()
	took := n.movedTo(onB, nodeA, cut)
	t.Logf("partition: replacement running on node-a %s after the cut", took.Round(100*time.Millisecond))
	v := n.waitFor(pin, "NodeLost", 30*time.Second, func(v workflows.StateView) bool { return v.State == workflows.StateNodeLost })
	if v.Node != nodeB || v.NodeState == nil || *v.NodeState != string(workflows.NodeLost) {
		t.Fatalf("pinned replica: node %s, node_state %v; want node-b, Lost", v.Node, v.NodeState)
	}
	if w, _ := n.status(onA); w.Node != nodeA || countEvents(w, workflows.EventRescheduled) != 0 {
		t.Fatalf("node-a's replica: %+v; want it left alone", w)
	}
	n.b.Proxy.Restore()
	n.waitFor(pin, "Running again once node-b is back", time.Minute, func(v workflows.StateView) bool {
		return v.State == workflows.StateRunning && v.Node == nodeB
	})
	if w, _ := n.status(onB); w.Node != nodeA {
		t.Fatalf("%s moved back to %s by itself", onB, w.Node)
	}

	// A third replica goes to node-b (the fewest), then node-b is lost.
	n.supervise(n.deployment("moving", moving(3)))
	const third = "moving/web-rep-3"
	n.waitFor(third, "Running on node-b", time.Minute, func(v workflows.StateView) bool {
		return v.State == workflows.StateRunning && v.Node == nodeB
	})
	lost := time.Now()
	if err := n.b.Crash(); err != nil {
		t.Fatal(err)
	}
	took = n.movedTo(third, nodeA, lost)
	t.Logf("host loss: replacement running on node-a %s after the crash", took.Round(100*time.Millisecond))
	n.waitFor(pin, "NodeLost", 30*time.Second, func(v workflows.StateView) bool { return v.State == workflows.StateNodeLost })

	// node-b returns: the containers of the replicas that moved are removed
	// there before anything else; the pinned replica runs again there.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.b.Containerd.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.b.StartWorker(); err != nil {
		t.Fatal(err)
	}
	n.waitFor(pin, "Running again on node-b", 90*time.Second, func(v workflows.StateView) bool {
		return v.State == workflows.StateRunning && v.Node == nodeB
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		ids, err := stack.ContainerIDs(n.b.Containerd)
		if err != nil {
			t.Fatal(err)
		}
		moved := []string{}
		for _, ref := range []string{onB, third} {
			if slices.Contains(ids, idOf(t, ref).ContainerName()) {
				moved = append(moved, ref)
			}
		}
		if len(moved) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-b still has the containers of %v, which moved to node-a", moved)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// A drain of node-a: its movable replicas move to node-b one at a
	// time (Drained); node-a stays cordoned until uncordoned.
	drained := time.Now()
	if r := n.vigil("node", "drain", nodeA, "--wait", "--timeout", "3m", "--json"); r.Code != 0 {
		t.Fatalf("vigil node drain: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("drain of 3 replicas (min_ready 1s): %s", time.Since(drained).Round(100*time.Millisecond))
	for _, ref := range []string{onA, onB, third} {
		v, _ := n.status(ref)
		last := v.Events[len(v.Events)-1]
		if v.Node != nodeB || v.State != workflows.StateRunning || last.Type != workflows.EventRescheduled || last.Reason == nil || *last.Reason != workflows.ReasonDrained {
			t.Fatalf("%s after the drain: node %s, %s, last event %+v; want Running on node-b, Rescheduled (Drained)", ref, v.Node, v.State, last)
		}
	}
	if r := n.vigil("node", "uncordon", nodeA); r.Code != 0 {
		t.Fatalf("vigil node uncordon: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("checker: %d rounds, %d duplicates", n.check.Rounds(), len(n.check.Duplicates()))
}
