// Package e2e runs Vigil end to end: a private containerd, a Temporal dev
// server on a database file, and real vigil-worker and vigil processes built
// from this repository. Under `make test` (VIGIL_REQUIRE_INTEGRATION=1) a
// missing prerequisite fails; under plain `go test` it skips.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/vigil-run/vigil/config/configtest"
	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/workflows"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds vigil and vigil-worker once per test binary.
func binaries(t *testing.T) (vigil, worker string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "vigil-e2e-bin")
		if buildErr != nil {
			return
		}
		for pkg, name := range map[string]string{"./starter": "vigil", "./worker": "vigil-worker"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg)
			cmd.Dir = ".."
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "vigil"), filepath.Join(binDir, "vigil-worker")
}

// stack is one test's Vigil installation.
type stack struct {
	t         *testing.T
	dir       string
	ctd       *containerdtest.Daemon
	cli       string // temporal CLI
	vigilBin  string
	workerBin string
	hostPort  string
	dbPath    string
	node      string

	srv       *testsuite.DevServer
	worker    *exec.Cmd
	workerOut *os.File
	workers   int
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{t: t, dir: t.TempDir(), node: "e2e"}
	s.cli = configtest.TemporalCLI(t)
	s.ctd = containerdtest.Start(t)
	s.vigilBin, s.workerBin = binaries(t)
	s.hostPort = freeHostPort(t)
	s.dbPath = filepath.Join(s.dir, "temporal.db")
	s.startServer()
	t.Cleanup(func() {
		s.killWorker()
		s.stopServer()
		if t.Failed() {
			s.dumpWorkerLog()
		}
	})
	s.startWorker()
	return s
}

func freeHostPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer starts the dev server on the stack's database file and port,
// with Vigil's search attributes registered as `make run` does.
func (s *stack) startServer() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{}
	for _, name := range workflows.SearchAttributeNames {
		args = append(args, "--search-attribute", name+"=Keyword")
	}
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  s.cli,
		ClientOptions: &client.Options{HostPort: s.hostPort},
		DBFilename:    s.dbPath,
		LogLevel:      "error",
		ExtraArgs:     append(args, "--dynamic-config-value", "system.enableActivityEagerExecution=true"),
		Stdout:        io.Discard,
		Stderr:        io.Discard,
	})
	if err != nil {
		s.t.Fatalf("dev server: %v", err)
	}
	s.srv = srv
}

func (s *stack) stopServer() {
	if s.srv != nil {
		_ = s.srv.Stop()
		s.srv = nil
	}
}

// startWorker starts a vigil-worker process for the stack's node.
func (s *stack) startWorker() {
	s.t.Helper()
	s.workers++
	out, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("worker-%d.log", s.workers)))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(s.workerBin,
		"--address", s.hostPort,
		"--node", s.node,
		"--containerd-address", s.ctd.Address,
		"--containerd-namespace", s.ctd.Namespace,
		"--log-dir", filepath.Join(s.dir, "logs"),
		"--log-format", "console",
	)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.worker, s.workerOut = cmd, out
}

// killWorker kills the worker with SIGKILL, as a crash of the host agent would.
func (s *stack) killWorker() {
	if s.worker == nil {
		return
	}
	_ = s.worker.Process.Signal(syscall.SIGKILL)
	_ = s.worker.Wait()
	_ = s.workerOut.Close()
	s.worker = nil
}

func (s *stack) dumpWorkerLog() {
	for i := 1; i <= s.workers; i++ {
		b, _ := os.ReadFile(filepath.Join(s.dir, fmt.Sprintf("worker-%d.log", i)))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		s.t.Logf("worker %d log (last lines):\n%s", i, strings.Join(lines, "\n"))
	}
}

// result is one run of the vigil CLI.
type result struct {
	stdout, stderr string
	code           int
}

func (s *stack) vigil(args ...string) result {
	s.t.Helper()
	full := append([]string{"--address", s.hostPort}, args...)
	cmd := exec.Command(s.vigilBin, full...)
	cmd.Env = append(os.Environ(), "VIGIL_NODE="+s.node)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	} else if err != nil {
		s.t.Fatalf("vigil %v: %v", args, err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// deployment writes a deployment file and returns its path.
func (s *stack) deployment(name, yaml string) string {
	s.t.Helper()
	p := filepath.Join(s.dir, name+".yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		s.t.Fatal(err)
	}
	return p
}

func (s *stack) supervise(file string) {
	s.t.Helper()
	r := s.vigil("supervise", "-f", file)
	if r.code != 0 {
		s.t.Fatalf("vigil supervise: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
}

// status returns the replica's state query, or false while it cannot be read
// (e.g. the server is restarting or the workflow has not started yet).
func (s *stack) status(ref string) (workflows.StateView, bool) {
	r := s.vigil("status", ref, "--json")
	if r.code != 0 {
		return workflows.StateView{}, false
	}
	var v workflows.StateView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		s.t.Fatalf("vigil status --json: %v\n%s", err, r.stdout)
	}
	return v, true
}

// waitFor polls the replica's state until cond holds. The limit only bounds a
// broken run; it is not a performance assertion.
func (s *stack) waitFor(ref, what string, limit time.Duration, cond func(workflows.StateView) bool) workflows.StateView {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	var last workflows.StateView
	for time.Now().Before(deadline) {
		if v, ok := s.status(ref); ok {
			last = v
			if cond(v) {
				return v
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.t.Fatalf("%s: %s not reached within %s; last state: %+v", ref, what, limit, last)
	return last
}

// taskExit reads a container's task status straight from containerd, with ctr.
func (s *stack) containerIDs() []string {
	s.t.Helper()
	out, err := exec.Command("ctr", "--address", s.ctd.Address, "--namespace", s.ctd.Namespace,
		"containers", "list", "--quiet").Output()
	if err != nil {
		s.t.Fatalf("ctr containers list: %v", err)
	}
	return strings.Fields(string(out))
}

func parseTime(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return at
}

func countEvents(v workflows.StateView, typ workflows.EventType) int {
	n := 0
	for _, e := range v.Events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func itoa(i int) string { return strconv.Itoa(i) }

func eventTypes(v workflows.StateView) []workflows.EventType {
	out := make([]workflows.EventType, len(v.Events))
	for i, e := range v.Events {
		out[i] = e.Type
	}
	return out
}

func equalTypes(a, b []workflows.EventType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func idOf(t *testing.T, ref string) runtime.ContainerID {
	t.Helper()
	id, err := workflows.ParseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func collectHistory(iter client.HistoryEventIterator) (*historypb.History, error) {
	h := &historypb.History{}
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return nil, err
		}
		h.Events = append(h.Events, ev)
	}
	return h, nil
}
