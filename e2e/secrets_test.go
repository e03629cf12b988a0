package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigil-run/vigil/config/configtest"
	"github.com/vigil-run/vigil/internal/histories"
	"github.com/vigil-run/vigil/workflows"
)

// A "$E:NAME" env value is resolved by the worker on the node, inside the
// activity: the container gets the secret, and neither the secret nor the
// API key shows up in workflow history, the worker's logs, or any output of
// the CLI.
func TestEnvSecretNeverLeaves(t *testing.T) {
	secret := "e2e-secret-" + randomHex(t)
	apiKey := "e2e-api-key-" + randomHex(t)
	// The worker and the CLI inherit these; the dev server has no TLS and
	// ignores the key, which is still sent on every call.
	t.Setenv("VIGIL_E2E_SECRET", secret)
	t.Setenv("TEMPORAL_API_KEY", apiKey)
	t.Setenv("TEMPORAL_TLS", "false")
	// The most talkative worker: nothing it logs may hold a secret.
	t.Setenv("VIGIL_LOG_LEVEL", "debug")
	s := newStack(t)

	// The container proves it got the secret by printing its digest only.
	s.supervise(s.deployment("sec", `version: v1
deployment: sec
services:
  app:
    rtype: service
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["printf %s \"$TOKEN\" | sha256sum; echo ready; exec sleep 3600"] }
    env: { TOKEN: "$E:VIGIL_E2E_SECRET", MODE: plain }
    scale: { mode: fixed, replicas: 1 }
`))
	s.waitFor("sec/app-rep-1", "Running", time.Minute, func(v workflows.StateView) bool { return v.State == workflows.StateRunning })
	want := sha256.Sum256([]byte(secret))
	var logs result
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		logs = s.vigil("logs", "sec/app-rep-1", "--tail", "0")
		if strings.Contains(logs.Stdout, "ready") || time.Now().After(deadline) {
			break
		}
	}
	if !strings.Contains(logs.Stdout, hex.EncodeToString(want[:])) {
		t.Fatalf("the container did not get the resolved secret; its output: %q", logs.Stdout)
	}

	outputs := map[string]string{"vigil logs": logs.Stdout + logs.Stderr}
	for _, args := range [][]string{
		{"status", "sec/app-rep-1"}, {"status", "sec/app-rep-1", "--json"},
		{"events", "sec/app-rep-1"}, {"events", "sec/app-rep-1", "--json"},
		{"list"}, {"list", "--json"}, {"list", "--counts"},
	} {
		r := s.vigil(args...)
		if r.Code != 0 {
			t.Fatalf("vigil %s: exit %d: %s", strings.Join(args, " "), r.Code, r.Stderr)
		}
		outputs["vigil "+strings.Join(args, " ")] = r.Stdout + r.Stderr
	}
	wid := idOf(t, "sec/app-rep-1").WorkflowID()
	shown, err := exec.Command(configtest.TemporalCLI(t), "workflow", "show", "--address", s.HostPort,
		"-w", wid, "--output", "json").Output()
	if err != nil {
		t.Fatalf("temporal workflow show: %v", err)
	}
	outputs["temporal workflow show --output json"] = string(shown)
	// That JSON holds payloads base64-encoded; the events' wire form holds
	// their bytes as they are.
	history := rawHistory(t, s, wid)
	if !strings.Contains(history, "$E:VIGIL_E2E_SECRET") {
		t.Fatal("workflow history lacks the $E: reference; is this the right workflow?")
	}
	outputs["workflow history"] = history
	maps.Copy(outputs, workerLogs(t, s))

	for where, text := range outputs {
		if strings.Contains(text, secret) {
			t.Errorf("%s contains the resolved $E: secret", where)
		}
		if strings.Contains(text, apiKey) {
			t.Errorf("%s contains the API key", where)
		}
	}
}

// workerLogs is the text of each worker log of the stack, by path.
func workerLogs(t *testing.T, s *tstack) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(s.Dir, "worker-*.log"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no worker logs in %s", s.Dir)
	}
	logs := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		logs[p] = string(b)
	}
	return logs
}

// rawHistory is the workflow's history events in protobuf wire form, whose
// payloads are the bytes the SDK sent.
func rawHistory(t *testing.T, s *tstack, workflowID string) string {
	t.Helper()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hist, err := histories.Read(t.Context(), c, workflowID, "")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, ev := range hist.Events {
		raw, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(raw)
	}
	return b.String()
}

func randomHex(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
