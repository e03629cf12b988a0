package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/workflows"
)

// nodesFile is deployment "typo" with services a and b, one replica each,
// on the given nodes.
func nodesFile(nodeA, nodeB string) string {
	svc := func(name, node string) string {
		return fmt.Sprintf(`  %s:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    stop_grace: 1s
    node: %s
    update: { min_ready: 1s }
`, name, node)
	}
	return "version: v1\ndeployment: typo\nservices:\n" + svc("a", nodeA) + svc("b", nodeB)
}

// unsuperviseStop runs vigil unsupervise --stop and fails the test unless
// it returns, done, within the liveness deadline of 10 s.
func (s *tstack) unsuperviseStop(ref string) string {
	s.t.Helper()
	began := time.Now()
	r := s.vigil("unsupervise", "--stop", ref)
	took := time.Since(began)
	if r.Code != 0 || took > 10*time.Second {
		s.t.Fatalf("unsupervise --stop %s: exit %d after %s (want 0 within 10s): %s%s", ref, r.Code, took.Round(time.Millisecond), r.Stdout, r.Stderr)
	}
	s.t.Logf("unsupervise --stop %s on a node without a worker took %s: %s", ref, took.Round(time.Millisecond), strings.TrimSpace(r.Stdout))
	return r.Stdout
}

func running(v workflows.StateView) bool { return v.State == workflows.StateRunning }

// A new replica on a node no worker serves (a node: typo) is unsupervised
// (with --stop) within 10 s; a move to such a node pauses at its preflight
// with the replica still serving; the corrected file then runs both.
func TestUnsuperviseOnANodeWithoutWorker(t *testing.T) {
	s := newStack(t)
	const typo = "e2e-typo"
	// a is new on the typo's node; b runs on the stack's node.
	s.apply(s.deployment("v1", nodesFile(typo, s.Node)))
	s.waitFor("typo/b-rep-1", "Running", 2*time.Minute, running)
	if v, _ := s.status("typo/a-rep-1"); v.State != workflows.StatePending {
		t.Fatalf("typo/a-rep-1 on a node without a worker: %s; want Pending", v.State)
	}
	if out := s.unsuperviseStop("typo/a-rep-1"); !strings.Contains(out, "container NOT stopped: no vigil-worker on node "+typo) {
		t.Errorf("unsupervise --stop of a new replica: %q; want it to say the container was not stopped", out)
	}

	// a's node fixed, b moved to the typo's node: b's replacement fails its
	// preflight there (no worker), so b keeps serving where it is and the
	// rollout pauses saying why.
	s.apply(s.deployment("v2", nodesFile(s.Node, typo)))
	st := s.waitRollout("typo", "paused", 2*time.Minute, func(st workflows.RolloutStatus) bool {
		return st.State == workflows.RolloutPaused
	})
	if !strings.Contains(st.Reason, "no worker on node "+typo) {
		t.Errorf("pause reason %q; want it to name the node without a worker", st.Reason)
	}
	if v, _ := s.status("typo/b-rep-1"); v.State != workflows.StateRunning || v.Generation != 1 || v.Node != s.Node {
		t.Errorf("typo/b-rep-1 after the paused move: %s, generation %d, node %q; want Running, generation 1, on %q", v.State, v.Generation, v.Node, s.Node)
	}
	s.waitFor("typo/a-rep-1", "Running on the fixed node", 2*time.Minute, running)

	// b's node fixed too: it runs again.
	s.apply(s.deployment("v3", nodesFile(s.Node, s.Node)))
	v := s.waitFor("typo/b-rep-1", "Running on the fixed node", 2*time.Minute, running)
	if v.Node != s.Node {
		t.Errorf("typo/b-rep-1 runs on %q; want %q", v.Node, s.Node)
	}
}
