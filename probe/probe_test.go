package probe

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

var id = replica.ID{Deployment: "d", Service: "s", Replica: 1}

// fake answers exec probes from a script (true: exit 0) and dials the host's
// loopback (tests only ever use 127.0.0.1).
type fake struct {
	mu      sync.Mutex
	script  map[string][]bool // per command, in order; past the end: the last
	calls   []string
	marked  bool
	task    time.Time // the start of the task that runs now
	stopped time.Duration
}

func (f *fake) Exec(_ context.Context, _ replica.ID, args []string, _ time.Duration) (int, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cmd := args[0]
	f.calls = append(f.calls, cmd)
	s := f.script[cmd]
	if len(s) == 0 {
		return 0, "", errors.New("no such command")
	}
	ok := s[0]
	if len(s) > 1 {
		f.script[cmd] = s[1:]
	}
	if ok {
		return 0, "", nil
	}
	return 1, cmd + ": not ready", nil
}

func (f *fake) Dial(ctx context.Context, _ replica.ID, port int, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

func (f *fake) StopUnhealthy(_ context.Context, _ replica.ID, task time.Time, grace time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !task.Equal(f.task) {
		return runtime.ErrTaskChanged
	}
	f.marked = true
	f.stopped = grace
	return nil
}

func probeOf(cmd string, threshold int) *runtime.Probe {
	return &runtime.Probe{Exec: []string{cmd}, Period: 5 * time.Millisecond, Timeout: time.Second, FailureThreshold: threshold}
}

// run runs a prober until it returns or 2 s pass, and returns the changes it
// reported (and the detail of the last).
func run(t *testing.T, f *fake, h runtime.Health) ([]runtime.HealthStatus, error) {
	changes, _, err := runDetail(t, f, h)
	return changes, err
}

func runDetail(t *testing.T, f *fake, h runtime.Health) ([]runtime.HealthStatus, string, error) {
	t.Helper()
	var mu sync.Mutex
	var changes []runtime.HealthStatus
	var detail string
	p := &Prober{Target: f, ID: id, Health: h, Logf: t.Logf, OnChange: func(s runtime.HealthStatus, d string) {
		mu.Lock()
		defer mu.Unlock()
		changes, detail = append(changes, s), d
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := p.Run(ctx)
	mu.Lock()
	defer mu.Unlock()
	return changes, detail, err
}

func TestLivenessFailuresInARowStopTheContainer(t *testing.T) {
	f := &fake{script: map[string][]bool{"live": {true, true, false, true, false, false, false}}}
	changes, detail, err := runDetail(t, f, runtime.Health{Liveness: probeOf("live", 3), StopGrace: 7 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// The unhealthy verdict says what the failed probe said.
	if want := "exec [live] exited 1: live: not ready"; detail != want {
		t.Errorf("detail %q, want %q", detail, want)
	}
	if want := []runtime.HealthStatus{runtime.HealthHealthy, runtime.HealthUnhealthy}; !slices.Equal(changes, want) {
		t.Errorf("changes %v, want %v (reported on change only)", changes, want)
	}
	if !f.marked || f.stopped != 7*time.Second {
		t.Errorf("marked %v, stopped with grace %s; want marked and stopped with the stop grace", f.marked, f.stopped)
	}
	if len(f.calls) != 7 {
		t.Errorf("%d probes, want 7: a success resets the count", len(f.calls))
	}
}

func TestLivenessWaitsForStartup(t *testing.T) {
	f := &fake{script: map[string][]bool{"start": {false, false, true}, "live": {false}}}
	changes, err := run(t, f, runtime.Health{Startup: probeOf("start", 5), Liveness: probeOf("live", 2)})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"start", "start", "start", "live", "live"}
	if len(f.calls) != len(want) {
		t.Fatalf("calls %v, want %v", f.calls, want)
	}
	for i := range want {
		if f.calls[i] != want[i] {
			t.Fatalf("calls %v, want %v", f.calls, want)
		}
	}
	if !slices.Equal(changes, []runtime.HealthStatus{runtime.HealthUnhealthy}) || !f.marked {
		t.Errorf("changes %v, marked %v; want unhealthy and stopped", changes, f.marked)
	}
}

func TestStartupThatNeverSucceedsStopsTheContainer(t *testing.T) {
	f := &fake{script: map[string][]bool{"start": {false}}}
	changes, err := run(t, f, runtime.Health{Startup: probeOf("start", 3), Liveness: probeOf("live", 1)})
	if err != nil || !f.marked || len(f.calls) != 3 || !slices.Equal(changes, []runtime.HealthStatus{runtime.HealthUnhealthy}) {
		t.Errorf("err %v, marked %v, calls %v, changes %v; want stopped after 3 startup failures", err, f.marked, f.calls, changes)
	}
}

func TestHealthyContainerRunsUntilCancelled(t *testing.T) {
	f := &fake{script: map[string][]bool{"live": {true}}}
	changes, err := run(t, f, runtime.Health{Liveness: probeOf("live", 1)})
	if !errors.Is(err, context.DeadlineExceeded) || f.marked || !slices.Equal(changes, []runtime.HealthStatus{runtime.HealthHealthy}) {
		t.Errorf("err %v, marked %v, changes %v; want healthy once, never stopped", err, f.marked, changes)
	}
}

func TestTCPAndHTTPProbes(t *testing.T) {
	var status = http.StatusOK
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/healthz" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	p := &Prober{Target: &fake{}, ID: id}
	ctx := context.Background()
	if err := p.once(ctx, &runtime.Probe{TCP: &runtime.TCPProbe{Port: port}, Timeout: time.Second}); err != nil {
		t.Errorf("tcp to a listening port: %v", err)
	}
	if err := p.once(ctx, &runtime.Probe{HTTP: &runtime.HTTPProbe{Port: port, Path: "/healthz"}, Timeout: time.Second}); err != nil {
		t.Errorf("http 200: %v", err)
	}
	mu.Lock()
	status = http.StatusServiceUnavailable
	mu.Unlock()
	if err := p.once(ctx, &runtime.Probe{HTTP: &runtime.HTTPProbe{Port: port, Path: "/healthz"}, Timeout: time.Second}); err == nil {
		t.Error("http 503 counted as healthy")
	}
	srv.Close()
	if err := p.once(ctx, &runtime.Probe{TCP: &runtime.TCPProbe{Port: port}, Timeout: time.Second}); err == nil {
		t.Error("tcp to a closed port counted as healthy")
	}
}

// A prober whose task was started again before its stop (a fast restart)
// leaves the new task alone: the new task has its own prober.
func TestAStopAfterARestartLeavesTheNewTask(t *testing.T) {
	f := &fake{script: map[string][]bool{"live": {false}}, task: time.Unix(1, 0)}
	changes, err := run(t, f, runtime.Health{Liveness: probeOf("live", 2)})
	if err != nil || f.marked || !slices.Equal(changes, []runtime.HealthStatus{runtime.HealthUnhealthy}) {
		t.Errorf("err %v, marked %v, changes %v; want the old task's verdict, nothing stopped", err, f.marked, changes)
	}
}
