package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vigil-run/vigil/control"
	"github.com/vigil-run/vigil/internal/ctrevents"
	"github.com/vigil-run/vigil/lease"
	"github.com/vigil-run/vigil/workflows"
)

// fenceLostAfter is the tests' reschedule.lost_after: the shortest allowed,
// so a replica is fenced 10 s after its node's last renewal.
const fenceLostAfter = 15 * time.Second

// movable is a deployment of two replicas placed on both nodes: one runs
// on each.
func movable(name string) string {
	return fmt.Sprintf(`version: v1
deployment: %s
services:
  web:
    rtype: service
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    scale: { mode: fixed, replicas: 2 }
    placement: { nodes: [node-a, node-b] }
    reschedule: { lost_after: %s }
    network: none
`, name, fenceLostAfter)
}

// onNodeB deploys movable(name) and returns the ref of its replica on node-b.
func (n *twoNodes) onNodeB(name string) string {
	n.t.Helper()
	n.apply(n.deployment(name, movable(name)))
	refs := []string{name + "/web-rep-1", name + "/web-rep-2"}
	onB := ""
	for _, ref := range refs {
		v := n.waitFor(ref, "Running", time.Minute, running)
		if v.Node == nodeB {
			onB = ref
		}
	}
	if onB == "" {
		n.t.Fatalf("no replica of %s placed on node-b", name)
	}
	return onB
}

func (n *twoNodes) nodeList() map[string]control.NodeSummary {
	n.t.Helper()
	r := n.vigil("node", "list", "--json")
	var nodes []control.NodeSummary
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &nodes) != nil {
		n.t.Fatalf("vigil node list --json: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	out := map[string]control.NodeSummary{}
	for _, s := range nodes {
		out[s.Node] = s
	}
	return out
}

// waitNode waits until `vigil node list` shows node in state.
func (n *twoNodes) waitNode(node string, state workflows.NodeState) {
	n.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := n.nodeList()[node]
		if got.State == state {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("node %s: %+v; want %s within a minute", node, got, state)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// The two-node stack (one for every scenario: each starts from both nodes
// Ready) checks the harness itself first and the checker last. Between, a
// movable replica never runs twice, whatever happens to its node:
//   - node-b cut off from the server: its replica's container is ended by
//     its fence about lost_after minus the margin after the last renewal,
//     before the replacement starts on node-a; `vigil node list` shows
//     node-b Lost meanwhile;
//   - node-b's worker hung (SIGSTOP) past the fence, continued before
//     lost_after: the replica restarts in place, event Fenced, no crash;
//   - node-b's worker alone SIGKILLed, containerd and the container alive:
//     the fence ends the container without the worker.
//
// Throughout, the checker reads both containerds every 100 ms. The pinned
// replica on node-b is never fenced.
func TestTwoNodes(t *testing.T) {
	n := newTwoNodes(t)
	onA, onB := recordDaemon(t, n.Containerd), recordDaemon(t, n.b.Containerd)
	fenceAt := lease.FenceAfter(fenceLostAfter)
	t.Run("harness", n.harness)
	if t.Failed() {
		return
	}
	n.waitNode(nodeA, workflows.NodeReady)
	n.waitNode(nodeB, workflows.NodeReady)
	pinned := idOf(t, pinnedRef).ContainerName()

	t.Run("partition", func(t *testing.T) {
		ref := n.onNodeB("part")
		name := idOf(t, ref).ContainerName()
		last, err := lease.Read(lease.Dir(n.b.Network.StateDir))
		if err != nil {
			t.Fatal(err)
		}
		n.b.Proxy.Cut()
		cut := time.Now()
		exit, ok := waitEvent(onB, name, ctrevents.Exit, cut, fenceLostAfter+time.Minute)
		if !ok {
			t.Fatalf("%s still runs on node-b %s after the cut", name, time.Since(cut).Round(time.Second))
		}
		// On the boot clock the fence fired at fenceAt after the last
		// renewal the lease file shows (the wall clock of its At).
		if fired := exit.At.Sub(last.At); fired < fenceAt-lease.Renewal {
			t.Fatalf("fenced %s after a renewal at most %s old; want about %s", fired, lease.Renewal, fenceAt)
		}
		t.Logf("fenced %s after the cut", exit.At.Sub(cut).Round(time.Millisecond))
		v := n.waitFor(ref, "moved to node-a", 2*time.Minute, func(v workflows.StateView) bool {
			return v.Node == nodeA && v.State == workflows.StateRunning
		})
		start, ok := onA.FirstAfter(name, ctrevents.Start, cut)
		if !ok || !start.At.After(exit.At) {
			t.Fatalf("replacement started on node-a at %v (seen %v); want after the fence at %v", start.At, ok, exit.At)
		}
		t.Logf("replacement running on node-a %s after the cut (%d events)", start.At.Sub(cut).Round(time.Millisecond), len(v.Events))
		if nodes := n.nodeList(); nodes[nodeB].State != workflows.NodeLost || nodes[nodeA].State != workflows.NodeReady {
			t.Fatalf("node list while cut: %+v; want node-b Lost, node-a Ready", nodes)
		}
		if _, b := n.runningOn(); !slices.Contains(b, pinned) {
			t.Fatalf("the pinned replica %s no longer runs on node-b (%v); a pinned replica is never fenced", pinned, b)
		}
		n.b.Proxy.Restore()
		n.waitNode(nodeB, workflows.NodeReady)
	})

	t.Run("lease back", func(t *testing.T) {
		ref := n.onNodeB("back")
		name := idOf(t, ref).ContainerName()
		before, _ := n.status(ref)
		n.b.SuspendWorker() // hung: it renews nothing
		hung := time.Now()
		exit, ok := waitEvent(onB, name, ctrevents.Exit, hung, fenceLostAfter+time.Minute)
		n.b.ResumeWorker()
		if !ok {
			t.Fatalf("%s still runs on node-b %s after its worker hung", name, time.Since(hung).Round(time.Second))
		}
		t.Logf("fenced %s after the worker hung; resumed before lost_after", exit.At.Sub(hung).Round(time.Millisecond))
		v := n.waitFor(ref, "restarted in place", time.Minute, func(v workflows.StateView) bool {
			return v.State == workflows.StateRunning && countEvents(v, workflows.EventFenced) == 1
		})
		if v.Node != nodeB || v.TotalRestarts != before.TotalRestarts || countEvents(v, workflows.EventRescheduled) != 0 {
			t.Fatalf("after the fence: on %s, %d restarts (before %d), events %v; want restarted in place on node-b, not a crash", v.Node, v.TotalRestarts, before.TotalRestarts, eventTypes(v))
		}
		if _, ok := onB.FirstAfter(name, ctrevents.Start, exit.At); !ok {
			t.Fatalf("no new task of %s on node-b after the fence", name)
		}
	})

	t.Run("worker killed", func(t *testing.T) {
		ref := n.onNodeB("kill")
		name := idOf(t, ref).ContainerName()
		n.b.KillWorker()
		killed := time.Now()
		exit, ok := waitEvent(onB, name, ctrevents.Exit, killed, fenceLostAfter+time.Minute)
		if !ok {
			t.Fatalf("%s still runs on node-b %s after its worker died", name, time.Since(killed).Round(time.Second))
		}
		t.Logf("fenced %s after the worker was killed", exit.At.Sub(killed).Round(time.Millisecond))
		n.waitFor(ref, "moved to node-a", 2*time.Minute, func(v workflows.StateView) bool {
			return v.Node == nodeA && v.State == workflows.StateRunning
		})
		if err := n.b.StartWorker(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("checker", n.checkerSeesACopy)
}
