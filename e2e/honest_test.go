package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

const honestDeployment = `version: v1
deployment: hon
services:
  app:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["echo started; exec sleep 3600"] }
    scale: { replicas: 1 }
  broken:
    image: { name: docker.io/library/busybox:nosuchtag, pull_policy: never }
    scale: { replicas: 1 }
`

// statusJSON is `vigil status --json` with the keys the CLI adds.
type statusJSON struct {
	workflows.StateView
	SupervisionEnded bool    `json:"supervision_ended"`
	StartError       *string `json:"start_error"`
}

func (s *tstack) statusJSON(ref string) statusJSON {
	s.t.Helper()
	r := s.vigil("status", ref, "--json")
	var st statusJSON
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &st) != nil {
		s.t.Fatalf("vigil status %s --json: exit %d %q %q", ref, r.Code, r.Stdout, r.Stderr)
	}
	return st
}

// started counts the app's starts in its log (each start echoes a line).
func (s *tstack) started(ref string) int {
	s.t.Helper()
	r := s.vigil("logs", ref, "--tail", "0")
	if r.Code != 0 {
		s.t.Fatalf("vigil logs %s: exit %d %q", ref, r.Code, r.Stderr)
	}
	return strings.Count(r.Stdout, "started")
}

// What a new user hit, with real daemons: the state says what is true
// (Pending, Unsupervised), operator requests are events, unsupervise leaves
// or stops and removes the container as asked, and supervising again adopts a
// container left running or starts afresh.
func TestHonestStateEndToEnd(t *testing.T) {
	s := newStack(t)
	file := s.deployment("hon", honestDeployment)
	s.supervise(file)

	// A start that cannot work: Pending (it never ran), the cause once, short.
	broken := s.waitFor("hon/broken-rep-1", "a start error", 2*time.Minute, func(v workflows.StateView) bool { return true })
	st := s.statusJSON("hon/broken-rep-1")
	for st.StartError == nil {
		time.Sleep(250 * time.Millisecond)
		st = s.statusJSON("hon/broken-rep-1")
	}
	if broken.State != workflows.StatePending || st.State != workflows.StatePending {
		t.Errorf("broken replica: %s, then %s; want Pending", broken.State, st.State)
	}
	cause := *st.StartError
	if len(cause) > 300 || strings.Contains(cause, "activity error") || strings.Count(cause, "nosuchtag") != 1 {
		t.Errorf("start_error %q (%d characters): want the cause once, short", cause, len(cause))
	}
	table := s.vigil("status", "hon/broken-rep-1")
	if !strings.Contains(table.Stdout, "START ERROR") || strings.Count(table.Stdout, "nosuchtag") != 1 {
		t.Errorf("status table: %q", table.Stdout)
	}
	// restart of a failing start tries it again now, and says how it went.
	r := s.vigil("restart", "hon/broken-rep-1")
	if r.Code != 1 || !strings.Contains(r.Stderr, "the start failed again") {
		t.Errorf("restart of a failing start: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}

	app := s.waitFor("hon/app-rep-1", "Running", time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateRunning })
	if app.TotalRestarts != 0 {
		t.Fatalf("app: %+v", app)
	}
	// An operator restart is an event (and no crash).
	if r := s.vigil("restart", "hon/app-rep-1"); r.Code != 0 {
		t.Fatalf("restart: exit %d %q", r.Code, r.Stderr)
	}
	// unsupervise without --stop: the container keeps running.
	r = s.vigil("unsupervise", "hon/app-rep-1")
	if r.Code != 0 || !strings.Contains(r.Stdout, "container left as it was") {
		t.Fatalf("unsupervise: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	st = s.statusJSON("hon/app-rep-1")
	if st.State != workflows.StateUnsupervised || !st.SupervisionEnded || st.StartError != nil {
		t.Errorf("after unsupervise: %+v", st)
	}
	if got := eventTypes(st.StateView); !equalTypes(got, []workflows.EventType{workflows.EventOperatorRestart, workflows.EventUnsupervised}) {
		t.Errorf("events %v", got)
	}
	if n := s.started("hon/app-rep-1"); n != 2 {
		t.Errorf("app started %d times before unsupervise; want 2 (start, operator restart)", n)
	}
	// Every command resolves the ID the same way: not "unknown ID".
	r = s.vigil("unsupervise", "--stop", "hon/app-rep-1")
	if r.Code != 1 || strings.Contains(r.Stderr, "unknown ID") || !strings.Contains(r.Stderr, "not supervised any more") {
		t.Errorf("unsupervise --stop of an unsupervised replica: exit %d %q", r.Code, r.Stderr)
	}
	// Only what is supervised is counted.
	counts := s.vigil("list", "--counts", "--json")
	var byState map[string]int
	if json.Unmarshal([]byte(counts.Stdout), &byState) != nil || byState["Running"] != 0 || byState["Pending"] != 1 || byState["total"] != 1 {
		t.Errorf("counts after unsupervise: %q", counts.Stdout)
	}

	// Supervised again: the running container is adopted, not restarted.
	s.supervise(file)
	app = s.waitFor("hon/app-rep-1", "Running again", time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateRunning })
	if n := s.started("hon/app-rep-1"); n != 2 {
		t.Errorf("app started %d times after supervising again; want 2: the running container is adopted", n)
	}
	// Supervised again with another command: the running container of the
	// old one is replaced (stopped with the new file's stop_grace), not
	// adopted under the new config.
	if r = s.vigil("unsupervise", "hon/app-rep-1"); r.Code != 0 {
		t.Fatalf("unsupervise: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	v2 := strings.Replace(honestDeployment, `"echo started; exec sleep 3600"] }`, `"echo started v2; exec sleep 3600"] }
    stop_grace: 1s`, 1)
	s.supervise(s.deployment("hon-v2", v2))
	s.waitFor("hon/app-rep-1", "Running the new command", time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateRunning })
	if n, last := s.started("hon/app-rep-1"), s.vigil("logs", "hon/app-rep-1", "--tail", "1").Stdout; n != 3 || !strings.Contains(last, "started v2") {
		t.Errorf("after supervising another command: %d starts, last line %q; want 3, the new command's", n, last)
	}

	// unsupervise --stop: stopped and removed; the log stays readable.
	r = s.vigil("unsupervise", "--stop", "hon/app-rep-1")
	if r.Code != 0 || !strings.Contains(r.Stdout, "container stopped and removed") {
		t.Fatalf("unsupervise --stop: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	for _, id := range s.containerIDs() {
		if strings.Contains(id, "app") {
			t.Errorf("containerd still has %s after unsupervise --stop", id)
		}
	}
	if n := s.started("hon/app-rep-1"); n != 3 {
		t.Errorf("log after unsupervise --stop shows %d starts; want 3", n)
	}
	// Supervised again: a clean start of a new container.
	s.supervise(file)
	s.waitFor("hon/app-rep-1", "Running after a clean start", time.Minute, func(v workflows.StateView) bool {
		return v.State == workflows.StateRunning && v.TotalRestarts == 0 && len(v.Events) == 0
	})
	if n := s.started("hon/app-rep-1"); n != 4 {
		t.Errorf("app started %d times in all; want 4", n)
	}

	// vigil logs ran eight times above: not one workflow for it.
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: "default", Query: "WorkflowType = '" + replica.FetchLogsWorkflowName + "'"})
	if err != nil || len(resp.GetExecutions()) != 0 {
		t.Errorf("FetchLogs workflows: %d, %v; want none", len(resp.GetExecutions()), err)
	}

	// unsupervise of the failing replica ends supervision at once.
	r = s.vigil("unsupervise", "--stop", "hon/broken-rep-1")
	if r.Code != 0 {
		t.Errorf("unsupervise --stop of a failing replica: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if st := s.statusJSON("hon/broken-rep-1"); st.State != workflows.StateUnsupervised {
		t.Errorf("broken after unsupervise: %s", st.State)
	}
}
