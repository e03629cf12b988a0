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

	vigil := func(args ...string) cliRun {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, vigilBin, args...)
		cmd.Env = env
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
	var created []workflows.PlanItem
	if err := json.Unmarshal([]byte(first.stdout), &created); err != nil || len(created) != 2 ||
		created[0].Action != workflows.ActionCreate || created[1].Action != workflows.ActionCreate {
		t.Fatalf("first supervise: %q %v", first.stdout, err)
	}
	// The deployment workflow starts the replicas after answering.
	deadline = time.Now().Add(60 * time.Second)
	for {
		st := vigil("rollout", "status", "shop", "--json")
		var rs workflows.RolloutStatus
		if st.code == 0 && json.Unmarshal([]byte(st.stdout), &rs) == nil && rs.State == workflows.RolloutComplete && rs.Updated == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout not complete: %d %q %q", st.code, st.stdout, st.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The same file again changes nothing.
	again := vigil("apply", "-f", good, "--json")
	var second []workflows.PlanItem
	if err := json.Unmarshal([]byte(again.stdout), &second); err != nil || len(second) != 2 {
		t.Fatalf("second apply: %q %v", again.stdout, err)
	}
	for _, it := range second {
		if it.Action != workflows.ActionUnchanged {
			t.Errorf("second apply: %+v; want unchanged", it)
		}
	}

	status := vigil("status", "--json", "shop/api-rep-1")
	var view map[string]any
	if status.code != 0 || json.Unmarshal([]byte(status.stdout), &view) != nil || view["state"] != "Running" || view["id"] != "shop/api-rep-1" {
		t.Errorf("status: %d %q %q", status.code, status.stdout, status.stderr)
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
	if counts.code != 0 || json.Unmarshal([]byte(counts.stdout), &byState) != nil || byState["Running"] != 2 || byState["total"] != 2 {
		t.Errorf("counts: %q", counts.stdout)
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
