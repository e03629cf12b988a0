package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/operatorservice/v1"

	"github.com/vigil-run/vigil/config/configtest"
	"github.com/vigil-run/vigil/replica"
)

// TestWorkerRegistersAndStopsOnSIGTERM runs the real binary against a dev
// server: it must register the search attributes, poll, and exit 0 on SIGTERM.
func TestWorkerRegistersAndStopsOnSIGTERM(t *testing.T) {
	srv := configtest.StartDevServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	bin := filepath.Join(t.TempDir(), "vigil-worker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--no-activities", "--node", "it-node")
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+srv.FrontendHostPort(), "VIGIL_LOG_FORMAT=json")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()

	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitFor := func(what string) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("worker exited before %q", what)
				}
				if !strings.HasPrefix(l, "{") {
					t.Errorf("log line is not JSON: %q", l)
				}
				if strings.Contains(l, what) {
					return
				}
			case <-deadline:
				t.Fatalf("no %q from the worker", what)
			}
		}
	}
	waitFor(`"msg":"polling"`)

	resp, err := srv.Client().OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range replica.SearchAttributeNames {
		if _, ok := resp.GetCustomAttributes()[name]; !ok {
			t.Errorf("search attribute %s not registered", name)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(`"msg":"vigil-worker stopped"`)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("worker exit after SIGTERM: %v, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not exit within 30 s of SIGTERM")
	}
}
