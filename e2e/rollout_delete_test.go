package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
)

// rolloutJSON is `vigil rollout status --json` read by its JSON names only,
// as scripts outside the repository read it: the names are the contract.
type rolloutJSON struct {
	Deployment string `json:"deployment"`
	Generation int    `json:"generation"`
	State      string `json:"state"`
	Updated    int    `json:"updated"`
	Available  int    `json:"available"`
	Total      int    `json:"total"`
	Reason     string `json:"reason"`
	NotReady   []struct {
		ID     string `json:"id"`
		State  string `json:"state"`
		Reason string `json:"reason"`
	} `json:"not_ready"`
}

// healthFile is a deployment with a healthy web service and a service that
// runs cmd (min_ready 1s).
func healthFile(dep, cmd string) string {
	return fmt.Sprintf(`version: v1
deployment: %s
services:
  web:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    stop_grace: 1s
    update: { min_ready: 1s }
  api:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: [%q] }
    stop_grace: 1s
    update: { min_ready: 1s }
    errors:
      on_panic: { action: restart, max_restarts: 2, restart_window: 60s, backoff: 3s, poll_interval: 1s }
`, dep, cmd)
}

// A crash-looping replica keeps the rollout progressing, named in
// not_ready, however complete the deployment thinks it is; apply --wait
// names it when --timeout passes; complete comes once every replica is
// available. Then vigil delete leaves no container and no running workflow
// of the deployment, says so, and a later apply counts on from its
// generation.
func TestRolloutStatusIsHealthAwareAndDeleteLeavesNothing(t *testing.T) {
	s := newStack(t)
	const dep = "hw"
	looping := s.deployment("looping", healthFile(dep, "sleep 0.3; exit 3"))
	r := s.vigil("apply", "-f", looping, "--wait", "--timeout", "15s")
	if r.Code != 1 || !strings.Contains(r.Stderr, "deployment hw: not done within --timeout 15s (generation 1 progressing, 2/2 updated, 1/2 available; not ready: hw/api-rep-1 ") {
		t.Fatalf("apply --wait of a crash-looping service: exit %d, stderr %q", r.Code, r.Stderr)
	}
	st := s.rolloutJSON(dep)
	if st.State != "progressing" || st.Updated != 2 || st.Total != 2 || st.Available != 1 || len(st.NotReady) != 1 ||
		st.NotReady[0].ID != "hw/api-rep-1" || st.NotReady[0].Reason == "" {
		t.Fatalf("rollout status of a crash-looping replica: %+v", st)
	}
	t.Logf("not ready: %+v", st.NotReady[0])

	// Fixed: complete once both replicas have run min_ready.
	fixed := s.deployment("fixed", healthFile(dep, "exec sleep 3600"))
	if r := s.vigil("apply", "-f", fixed, "--wait", "--timeout", "2m"); r.Code != 0 || !strings.Contains(r.Stdout, "deployment hw: generation 2 complete, 2/2 replicas available") {
		t.Fatalf("apply --wait of the fixed file: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if st := s.rolloutJSON(dep); st.State != "complete" || st.Available != 2 || len(st.NotReady) != 0 {
		t.Fatalf("rollout status once healthy: %+v", st)
	}
	s.waitContainers(2)

	// Delete: every container gone, every workflow of the deployment ended.
	r = s.vigil("delete", dep, "--json")
	var deleted struct {
		Generation int  `json:"generation"`
		Gone       bool `json:"gone"`
		Replicas   []struct {
			ID   string `json:"id"`
			Note string `json:"note"`
		} `json:"replicas"`
	}
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &deleted) != nil || !deleted.Gone || deleted.Generation != 2 || len(deleted.Replicas) != 2 ||
		!strings.Contains(deleted.Replicas[0].Note, "container stopped and removed") {
		t.Fatalf("vigil delete: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if ids := s.containerIDs(); len(ids) != 0 {
		t.Fatalf("containers left after delete: %v", ids)
	}
	s.noRunningWorkflows(dep)
	if r := s.vigil("delete", dep); r.Code != 0 || !strings.Contains(r.Stdout, "deployment hw: nothing to delete") {
		t.Fatalf("delete again: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// The name applied again starts above the generation it had.
	if r := s.vigil("apply", "-f", fixed); r.Code != 0 || !strings.Contains(r.Stdout, "deployment hw: generation 3 rolling out") {
		t.Fatalf("apply after delete: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
}

func (s *tstack) rolloutJSON(dep string) rolloutJSON {
	s.t.Helper()
	r := s.vigil("rollout", "status", dep, "--json")
	var st rolloutJSON
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &st) != nil {
		s.t.Fatalf("vigil rollout status %s --json: exit %d %q %q", dep, r.Code, r.Stdout, r.Stderr)
	}
	return st
}

// noRunningWorkflows checks that no workflow of the deployment runs: its
// own, and its replicas' (visibility may lag the close by a moment).
func (s *tstack) noRunningWorkflows(dep string) {
	s.t.Helper()
	c, ctx := s.clientFor()
	d, err := c.DescribeWorkflowExecution(ctx, "vigil/"+dep, "")
	if err != nil || d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		s.t.Fatalf("the deployment's workflow after delete: %v %v", d.GetWorkflowExecutionInfo().GetStatus(), err)
	}
	query := fmt.Sprintf("ExecutionStatus = 'Running' AND VigilDeployment = '%s'", dep)
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: query})
		if err == nil && resp.GetCount() == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("replica workflows still running after delete: %v %v", resp.GetCount(), err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
