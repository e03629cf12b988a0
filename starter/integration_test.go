package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-run/vigil/config/configtest"
	"github.com/vigil-run/vigil/workflows"
)

// cliRun is one invocation of the real vigil binary.
type cliRun struct {
	code           int
	stdout, stderr string
}

func buildBinaries(t *testing.T) (vigilBin, workerBin string) {
	t.Helper()
	dir := t.TempDir()
	vigilBin, workerBin = filepath.Join(dir, "vigil"), filepath.Join(dir, "vigil-worker")
	for pkg, out := range map[string]string{".": vigilBin, "../worker": workerBin} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, b)
		}
	}
	return vigilBin, workerBin
}

// TestCLIAgainstDevServer runs the real binaries against a dev server. The
// worker runs workflows only (no containerd), which is enough for the
// contract checked here: idempotent supervise, usage errors that change
// nothing, unknown IDs.
func TestCLIAgainstDevServer(t *testing.T) {
	srv := configtest.StartDevServer(t)
	vigilBin, workerBin := buildBinaries(t)
	env := append(os.Environ(), "TEMPORAL_ADDRESS="+srv.FrontendHostPort(), "VIGIL_NODE=it-node", "TEMPORAL_API_KEY=", "VIGIL_TASK_QUEUE=")

	wlog := &syncBuffer{}
	w := exec.Command(workerBin, "--no-activities", "--log-format", "console")
	w.Env, w.Stderr = env, wlog
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Process.Kill(); _ = w.Wait() })

	vigilIn := func(stdin string, args ...string) cliRun {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, vigilBin, args...)
		cmd.Env = env
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		r := cliRun{stdout: out.String(), stderr: errOut.String()}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			r.code = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("vigil %v: %v", args, err)
		}
		return r
	}
	vigil := func(args ...string) cliRun { t.Helper(); return vigilIn("", args...) }
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := file("good.yaml", twoReplicas)

	// The worker registers the search attributes; supervise needs them.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(wlog.String(), "polling") {
		if time.Now().After(deadline) {
			t.Fatalf("worker not polling:\n%s", wlog.String())
		}
		time.Sleep(200 * time.Millisecond)
	}

	first := vigil("supervise", "-f", good, "--json")
	if first.code != 0 {
		t.Fatalf("supervise: %d %s", first.code, first.stderr)
	}
	// No worker polls it-node's queue (the worker runs workflows only): a
	// warning, in JSON as asked, and still exit 0.
	var warning map[string]string
	if err := json.Unmarshal([]byte(first.stderr), &warning); err != nil || !strings.Contains(warning["warning"], "no vigil-worker polls node it-node's queue") {
		t.Errorf("supervise without a node worker: stderr %q, want a JSON warning", first.stderr)
	}
	var created []workflows.PlanItem
	if err := json.Unmarshal([]byte(first.stdout), &created); err != nil || len(created) != 2 ||
		created[0].Action != workflows.ActionCreate || created[1].Action != workflows.ActionCreate {
		t.Fatalf("first supervise: %q %v", first.stdout, err)
	}
	// The deployment workflow starts the replicas after answering. Both
	// are updated, but with no node worker neither has run: the rollout is
	// not complete, and says which replicas are not ready and why.
	deadline = time.Now().Add(60 * time.Second)
	for {
		st := vigil("rollout", "status", "shop", "--json")
		var rs rolloutView
		if st.code == 0 && json.Unmarshal([]byte(st.stdout), &rs) == nil && rs.Updated == 2 {
			if rs.State != workflows.RolloutProgressing || rs.Available != 0 || len(rs.NotReady) != 2 ||
				rs.NotReady[0] != (notReady{ID: "shop/api-rep-1", State: "Pending", Reason: "no vigil-worker polls node it-node's queue; start one with --node it-node"}) {
				t.Errorf("rollout status without a node worker: %s", st.stdout)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout not complete: %d %q %q", st.code, st.stdout, st.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The same file again (from stdin) changes nothing.
	again := vigilIn(twoReplicas, "apply", "-f", "-", "--json")
	var second []workflows.PlanItem
	if err := json.Unmarshal([]byte(again.stdout), &second); err != nil || len(second) != 2 {
		t.Fatalf("second apply: %q %v", again.stdout, err)
	}
	for _, it := range second {
		if it.Action != workflows.ActionUnchanged {
			t.Errorf("second apply: %+v; want unchanged", it)
		}
	}

	// --wait: every replica is updated, but none runs (no node worker), so
	// it fails when --timeout passes, saying where it stood and naming them.
	waited := vigil("apply", "-f", good, "--wait", "--timeout", "8s")
	if waited.code != 1 || !strings.Contains(waited.stderr, "deployment shop: not done within --timeout 8s (generation 1 progressing, 2/2 updated, 0/2 available; not ready: shop/api-rep-1 Pending: no vigil-worker polls node it-node's queue") {
		t.Errorf("apply --wait with no node worker: exit %d, stderr %q", waited.code, waited.stderr)
	}

	// Its container never ran: Pending, not Running.
	status := vigil("status", "--json", "shop/api-rep-1")
	var view map[string]any
	if status.code != 0 || json.Unmarshal([]byte(status.stdout), &view) != nil || view["state"] != "Pending" || view["id"] != "shop/api-rep-1" ||
		view["supervision_ended"] != false || view["start_error"] != nil || view["node"] != "it-node" {
		t.Errorf("status: %d %q %q", status.code, status.stdout, status.stderr)
	}
	// In the history (what the Web UI shows), durations read as a
	// deployment file writes them, not as nanoseconds.
	hist := srv.Client().GetWorkflowHistory(context.Background(), "vigil/shop/api-rep-1", "", false, 0)
	first1, err := hist.Next()
	if err != nil {
		t.Fatal(err)
	}
	input := string(first1.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()[0].GetData())
	if !strings.Contains(input, `"restart_window":"5m"`) || !strings.Contains(input, `"stop_grace":"10s"`) || strings.Contains(input, "300000000000") {
		t.Errorf("workflow input in history: %s; want durations as text", input)
	}
	table := vigil("status", "shop/api-rep-1")
	if !regexpMatch(`^STATE\s+Pending$`, table.stdout) || !regexpMatch(`^NODE\s+it-node \((no vigil-worker polls its queue|no worker since)`, table.stdout) ||
		!regexpMatch(`^SUPERVISED SINCE\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d$`, table.stdout) {
		t.Errorf("status table: %q", table.stdout)
	}

	// Bad files and bad calls: exit 2, one line naming the field, nothing changed.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"supervise", "-f", file("typo.yaml", strings.Replace(twoReplicas, "replicas: 2", "replicas: 2, extra: 1", 1))}, "services.api.scale.extra: unknown field"},
		{[]string{"supervise", "-f", file("zero.yaml", strings.Replace(twoReplicas, "replicas: 2", "replicas: 0", 1))}, "services.api.scale.replicas: 0 is out of range"},
		{[]string{"supervise", "-f", file("slash.yaml", strings.Replace(twoReplicas, "deployment: shop", "deployment: ../shop", 1))}, "deployment: \"../shop\" is not a valid name"},
		{[]string{"supervise", "-f", file("dur.yaml", twoReplicas+"    errors: { on_panic: { backoff: 30 } }\n")}, "services.api.errors.on_panic.backoff: \"30\" has no unit"},
		{[]string{"supervise", "-f", filepath.Join(dir, "nope.yaml")}, "nope.yaml: file: cannot read"},
		{[]string{"status", "shop/api"}, "want <deployment>/<service>-rep-<replica>"},
		{[]string{"list", "--state", "Dead"}, "--state"},
		{[]string{"unsupervise"}, "want exactly one ID"},
		// yaml.v3 alone says line 5 here: the line where the mapping began.
		{[]string{"supervise", "-f", file("indent.yaml", twoReplicas+"   bad: 1\n")}, "indent.yaml:8: document: invalid YAML"},
		{[]string{"list", "--state", "Sleeping", "--json"}, `{"error":"--state: \"Sleeping\" is not one of Pending, Running,`},
		{[]string{"status", "--json", "shop/api"}, `{"error":"ID \"shop/api\": want`},
	} {
		r := vigil(tc.args...)
		if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d stderr %q; want exit 2 and one line containing %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	for _, id := range []string{"shop/api-rep-9", "other/api-rep-1"} {
		r := vigil("status", id)
		if r.code != 1 || !strings.Contains(r.stderr, "unknown ID "+id) {
			t.Errorf("status %s: exit %d %q", id, r.code, r.stderr)
		}
		var jerr map[string]string
		r = vigil("status", id, "--json")
		if r.code != 1 || json.Unmarshal([]byte(r.stderr), &jerr) != nil || !strings.HasPrefix(jerr["error"], "unknown ID "+id) {
			t.Errorf("status %s --json: exit %d %q", id, r.code, r.stderr)
		}
	}

	// After bad files and calls, the file still matches what runs.
	third := vigil("supervise", "-f", good, "--json")
	var after []workflows.PlanItem
	if err := json.Unmarshal([]byte(third.stdout), &after); err != nil || len(after) != 2 {
		t.Fatalf("third supervise: %q", third.stdout)
	}
	for _, it := range after {
		if it.Action != workflows.ActionUnchanged {
			t.Errorf("third supervise: %+v; want unchanged", it)
		}
	}

	// The deployment workflow (vigil/shop) is not a replica: list and
	// counts show the two replicas only.
	// Visibility is eventually consistent: wait for both replicas to be listed.
	var views []map[string]any
	for deadline := time.Now().Add(30 * time.Second); ; {
		r := vigil("list", "--json", "--deployment", "shop")
		views = nil
		if r.code == 0 && json.Unmarshal([]byte(r.stdout), &views) == nil && len(views) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list: %d %q %q", r.code, r.stdout, r.stderr)
		}
		time.Sleep(500 * time.Millisecond)
	}
	counts := vigil("list", "--counts", "--json")
	var byState map[string]int
	if counts.code != 0 || json.Unmarshal([]byte(counts.stdout), &byState) != nil || byState["Pending"] != 2 || byState["Running"] != 0 || byState["total"] != 2 {
		t.Errorf("counts: %q", counts.stdout)
	}
	// --state in any case.
	pending := vigil("list", "--state", "pending")
	if pending.code != 0 || strings.Count(pending.stdout, "shop/api-rep-") != 2 || !strings.Contains(pending.stdout, "it-node (no worker") ||
		!strings.Contains(pending.stderr, "warning: no vigil-worker polls node it-node's queue") {
		t.Errorf("list --state pending: %d %q %q", pending.code, pending.stdout, pending.stderr)
	}

	// A restart waits for the start nobody takes: the CLI gives up, the
	// request goes on, and running the command again joins it instead of
	// being refused as "another request".
	for i := 0; i < 2; i++ {
		r := vigil("restart", "shop/api-rep-1", "--timeout", "3s")
		if r.code != 1 || !strings.Contains(r.stderr, "restart request") || !strings.Contains(r.stderr, "it goes on: run the same command again") {
			t.Errorf("restart %d without a node worker: exit %d %q", i, r.code, r.stderr)
		}
	}
	// unsupervise --stop ends supervision promptly all the same, and says
	// what it could not do.
	began := time.Now()
	unsup := vigil("unsupervise", "--stop", "shop/api-rep-1")
	if unsup.code != 0 || !strings.Contains(unsup.stdout, "container NOT stopped: no vigil-worker on node it-node took the stop within 5s") {
		t.Errorf("unsupervise --stop without a node worker: exit %d %q %q", unsup.code, unsup.stdout, unsup.stderr)
	}
	t.Logf("unsupervise --stop without a node worker took %s", time.Since(began).Round(time.Millisecond))
	status = vigil("status", "--json", "shop/api-rep-1")
	view = nil
	if json.Unmarshal([]byte(status.stdout), &view) != nil || view["state"] != "Unsupervised" || view["supervision_ended"] != true {
		t.Errorf("status after unsupervise: %q %q", status.stdout, status.stderr)
	}
	events := vigil("events", "--json", "shop/api-rep-1")
	var evs []workflows.Event
	if err := json.Unmarshal([]byte(events.stdout), &evs); err != nil || len(evs) != 2 ||
		evs[0].Type != workflows.EventOperatorRestart || evs[1].Type != workflows.EventUnsupervised || !strings.Contains(evs[1].Note, "NOT stopped") {
		t.Errorf("events: %q", events.stdout)
	}
	// The same ID resolves the same way for every command: not "unknown ID".
	again2 := vigil("unsupervise", "--stop", "shop/api-rep-1")
	if again2.code != 1 || !strings.Contains(again2.stderr, "shop/api-rep-1: not supervised any more") {
		t.Errorf("unsupervise of an unsupervised replica: exit %d %q", again2.code, again2.stderr)
	}
	// Only what is supervised is counted.
	for deadline := time.Now().Add(30 * time.Second); ; {
		counts = vigil("list", "--counts", "--json")
		byState = nil
		if json.Unmarshal([]byte(counts.stdout), &byState) == nil && byState["Pending"] == 1 && byState["total"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts after unsupervise: %q", counts.stdout)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The unsupervised replica is listed by its state (it never was).
	unsupervised := vigil("list", "--state", "Unsupervised")
	if unsupervised.code != 0 || strings.Count(unsupervised.stdout, "shop/api-rep-") != 1 || !strings.Contains(unsupervised.stdout, "shop/api-rep-1") {
		t.Errorf("list --state Unsupervised: %d %q %q", unsupervised.code, unsupervised.stdout, unsupervised.stderr)
	}

	// delete ends the other replica and the deployment's workflow; with no
	// node worker its container cannot be stopped: exit 1, naming it.
	del := vigil("delete", "shop", "--json")
	var deleted struct {
		Generation int  `json:"generation"`
		Gone       bool `json:"gone"`
		Replicas   []struct {
			ID   string `json:"id"`
			Note string `json:"note"`
			Left bool   `json:"left"`
		} `json:"replicas"`
	}
	if del.code != 1 || json.Unmarshal([]byte(del.stdout), &deleted) != nil || deleted.Gone || deleted.Generation != 1 ||
		len(deleted.Replicas) != 1 || deleted.Replicas[0].ID != "shop/api-rep-2" || !deleted.Replicas[0].Left ||
		!strings.Contains(del.stderr, "shop/api-rep-2 on node it-node: unsupervised; container NOT stopped: no vigil-worker on node it-node took the stop") {
		t.Errorf("delete without a node worker: exit %d %q %q", del.code, del.stdout, del.stderr)
	}
	if st := vigil("rollout", "status", "shop"); st.code != 1 || !strings.Contains(st.stderr, "unknown deployment shop") {
		t.Errorf("rollout status after delete: %d %q", st.code, st.stderr)
	}
	again3 := vigil("delete", "shop")
	if again3.code != 0 || !strings.Contains(again3.stdout, "deployment shop: nothing to delete") {
		t.Errorf("delete again: %d %q %q", again3.code, again3.stdout, again3.stderr)
	}
	// The name applied again starts above the generation it had.
	reapplied := vigil("apply", "-f", good, "--dry-run")
	if reapplied.code != 0 || !strings.Contains(reapplied.stdout, "applying would make generation 2") {
		t.Errorf("dry run after delete: %d %q %q", reapplied.code, reapplied.stdout, reapplied.stderr)
	}
	reapplied = vigil("apply", "-f", good)
	if reapplied.code != 0 || !strings.Contains(reapplied.stdout, "deployment shop: generation 2 rolling out") {
		t.Errorf("apply after delete: %d %q %q", reapplied.code, reapplied.stdout, reapplied.stderr)
	}
}

// syncBuffer is a bytes.Buffer safe for a writing process and a reading test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
