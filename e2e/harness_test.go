// Package e2e runs Vigil end to end: a private containerd, a Temporal dev
// server on a database file, and real vigil-worker and vigil processes built
// from this repository (see internal/stack). Under `make test`
// (VIGIL_REQUIRE_INTEGRATION=1) a missing prerequisite fails; under plain
// `go test` it skips.
package e2e

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/vigil-run/vigil/config/configtest"
	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/internal/ctrevents"
	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

var (
	buildOnce           sync.Once
	vigilBin, workerBin string
	buildErr            error
)

// binDirs hold the binaries built for this test run; TestMain removes them.
var binDirs []string

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range binDirs {
		_ = os.RemoveAll(d)
	}
	os.Exit(code)
}

// tstack is a stack whose failures fail the test.
type tstack struct {
	*stack.Stack
	t *testing.T
}

// requirePrerequisites skips (or, under make test, fails) without the daemons.
func requirePrerequisites(t *testing.T) string {
	t.Helper()
	cli := configtest.TemporalCLI(t)
	if err := containerdtest.Prerequisites(); err != nil {
		containerdtest.Unavailable(t, err.Error())
	}
	return cli
}

// newStack starts a stack of this tree's vigil and vigil-worker and its
// worker, with workerArgs added to the worker's command line.
func newStack(t *testing.T, workerArgs ...string) *tstack {
	t.Helper()
	requirePrerequisites(t)
	vigil, worker := currentBinaries(t)
	return newStackOf(t, vigil, worker, workerArgs...)
}

// currentBinaries builds this tree's vigil and vigil-worker, once per test run.
func currentBinaries(t *testing.T) (vigil, worker string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vigil-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binDirs = append(binDirs, dir)
		vigilBin, workerBin, buildErr = stack.Build("..", dir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return vigilBin, workerBin
}

// newStackOf starts a stack of the given binaries, with one worker running.
func newStackOf(t *testing.T, vigilBin, workerBin string, workerArgs ...string) *tstack {
	t.Helper()
	return newStackOn(t, "e2e", vigilBin, workerBin, workerArgs...)
}

// newStackOn is newStackOf with the stack's node named node.
func newStackOn(t *testing.T, node, vigilBin, workerBin string, workerArgs ...string) *tstack {
	t.Helper()
	return newStackWith(t, stack.Options{VigilBin: vigilBin, WorkerBin: workerBin, Node: node, WorkerArgs: workerArgs})
}

// newStackWith starts a stack of opts (Dir and TemporalCLI are filled in),
// with one worker running.
func newStackWith(t *testing.T, opts stack.Options) *tstack {
	t.Helper()
	cli := requirePrerequisites(t)
	// Short: the containerd socket lives under it.
	dir, err := os.MkdirTemp("", "e2e")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts.Dir, opts.TemporalCLI = dir, cli
	st, err := stack.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	s := &tstack{Stack: st, t: t}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(st.WorkerLogTail(40))
			t.Logf("containerd log:\n%s", st.Containerd.LogTail(20))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := st.Close(ctx); err != nil {
			t.Errorf("stop the stack: %v", err)
		}
		_ = os.RemoveAll(dir)
	})
	s.startWorker()
	return s
}

func (s *tstack) startWorker() {
	s.t.Helper()
	if err := s.StartWorker(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *tstack) killWorker() { s.KillWorker() }

func (s *tstack) startServer() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.StartServer(ctx); err != nil {
		s.t.Fatal(err)
	}
}

func (s *tstack) stopServer() {
	if err := s.StopServer(); err != nil {
		s.t.Logf("stop dev server: %v", err)
	}
}

type result = stack.Result

func (s *tstack) vigil(args ...string) result {
	s.t.Helper()
	r, err := s.Vigil(args...)
	if err != nil {
		s.t.Fatalf("vigil %v: %v", args, err)
	}
	return r
}

func (s *tstack) deployment(name, yaml string) string {
	s.t.Helper()
	p, err := s.Deployment(name, yaml)
	if err != nil {
		s.t.Fatal(err)
	}
	return p
}

func (s *tstack) supervise(file string) {
	s.t.Helper()
	if err := s.Supervise(file); err != nil {
		s.t.Fatal(err)
	}
}

func (s *tstack) status(ref string) (workflows.StateView, bool) {
	s.t.Helper()
	v, ok, err := s.Status(ref)
	if err != nil {
		s.t.Fatal(err)
	}
	return v, ok
}

func (s *tstack) waitFor(ref, what string, limit time.Duration, cond func(workflows.StateView) bool) workflows.StateView {
	s.t.Helper()
	v, err := s.WaitFor(ref, what, limit, cond)
	if err != nil {
		s.t.Fatal(err)
	}
	return v
}

// dataConverter is the converter of the stack's payloads (with its key
// file, if any).
func (s *tstack) dataConverter() converter.DataConverter {
	s.t.Helper()
	dc, err := s.DataConverter()
	if err != nil {
		s.t.Fatal(err)
	}
	return dc
}

// clientFor dials the stack's server for a minute of work: the client and
// the context are released when the test ends.
func (s *tstack) clientFor() (client.Client, context.Context) {
	s.t.Helper()
	c, err := s.Client()
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	s.t.Cleanup(func() { cancel(); c.Close() })
	return c, ctx
}

func (s *tstack) containerIDs() []string {
	s.t.Helper()
	ids, err := s.ContainerIDs()
	if err != nil {
		s.t.Fatal(err)
	}
	return ids
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

func idOf(t *testing.T, ref string) replica.ID {
	t.Helper()
	id, err := replica.ParseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func itoa(i int) string { return strconv.Itoa(i) }

// recordTaskEvents records containerd's task starts and exits of the
// stack's namespace until the test ends.
func recordTaskEvents(t *testing.T, st *stack.Stack) *ctrevents.Recorder {
	t.Helper()
	return recordDaemon(t, st.Containerd)
}

// recordDaemon records the task starts and exits of a containerd's
// namespace until the test ends.
func recordDaemon(t *testing.T, d *containerdtest.Daemon) *ctrevents.Recorder {
	t.Helper()
	rec, err := ctrevents.Record(t.Context(), d.Address, d.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rec.Close)
	return rec
}

// waitEvent waits (at most limit) for container's first event of a kind at or after t.
func waitEvent(rec *ctrevents.Recorder, container string, kind ctrevents.Kind, t time.Time, limit time.Duration) (ctrevents.Event, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	e, err := rec.WaitFor(ctx, container, kind, t)
	return e, err == nil
}
