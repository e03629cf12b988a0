package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/runtime/runtimetest"
)

func TestHandlerRoutesVigilNamesWithExactLabels(t *testing.T) {
	m := New()
	h, closeH, err := m.Handler()
	if err != nil {
		t.Fatal(err)
	}
	// The SDK adds its own tags (namespace, task_queue, ...); Vigil's series
	// keep only their contract labels.
	wf := h.WithTags(map[string]string{"namespace": "default", "task_queue": "vigil"}).
		WithTags(map[string]string{LabelDeployment: "shop", LabelService: "api"})
	wf.Counter(ContainerRestarts).Inc(2)
	wf.WithTags(map[string]string{LabelReason: string(runtime.ExitExited)}).Counter(ContainerExits).Inc(1)
	wf.Timer(RestartLatency).Record(150 * time.Millisecond)
	wf.Counter("request").Inc(1) // an SDK metric
	closeH()                     // flushes tally to the registry

	if got := testutil.ToFloat64(m.Counter(ContainerRestarts, "shop", "api", "")); got != 2 {
		t.Errorf("restarts = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.Counter(ContainerExits, "shop", "api", string(runtime.ExitExited))); got != 1 {
		t.Errorf("exits = %v, want 1", got)
	}
	if got := m.RestartLatencyCount(); got != 1 {
		t.Errorf("latency samples = %d, want 1", got)
	}
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string][]string{}
	for _, f := range fams {
		for _, mm := range f.Metric {
			var labels []string
			for _, l := range mm.Label {
				labels = append(labels, l.GetName())
			}
			names[f.GetName()] = labels
		}
	}
	if got := names[ContainerRestarts]; fmt.Sprint(got) != "[deployment service]" {
		t.Errorf("%s labels %v, want [deployment service]", ContainerRestarts, got)
	}
	if _, ok := names["request_total"]; !ok {
		t.Errorf("SDK counter not served under its Prometheus name request_total; have %v", keys(names))
	}
}

func keys(m map[string][]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestInstrumentCountsErrorsByKind(t *testing.T) {
	m := New()
	fake := runtimetest.New()
	rt := m.Instrument(fake)
	id := replica.ID{Deployment: "shop", Service: "api", Replica: 1}
	if _, err := rt.State(context.Background(), id); !errors.Is(err, runtime.ErrContainerNotFound) {
		t.Fatalf("state of a missing container: %v", err)
	}
	if err := rt.Create(context.Background(), id, runtime.ContainerSpec{Image: "busybox"}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.rtErrors.WithLabelValues("state", KindContainerNotFound)); got != 1 {
		t.Errorf("state/container_not_found = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(m.rtErrors); got != 1 {
		t.Errorf("%d error series, want 1 (a success counts nothing)", got)
	}
	for err, want := range map[error]string{
		runtime.ErrImageNotFound:                          KindImageNotFound,
		fmt.Errorf("dial: %w", runtime.ErrUnavailable):    KindUnavailable,
		context.DeadlineExceeded:                          KindCanceled,
		errors.New("something else"):                      KindOther,
		fmt.Errorf("x: %w", runtime.ErrContainerNotFound): KindContainerNotFound,
	} {
		if got := ErrorKind(err); got != want {
			t.Errorf("ErrorKind(%v) = %s, want %s", err, got, want)
		}
	}
}

func TestEndpoints(t *testing.T) {
	m := New()
	ready := NewReadiness("workflow queue polled", "node queue polled")
	var containerdUp atomic.Bool
	containerdUp.Store(true)
	ready.AddCheck("containerd", func(context.Context) error {
		if !containerdUp.Load() {
			return errors.New("connection refused")
		}
		return nil
	})
	srv, err := Listen("127.0.0.1:0", m, ready)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	base := "http://" + srv.Addr()

	check := func(path string, code int, body string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != code || !strings.Contains(string(b), body) {
			t.Errorf("GET %s: %d %q; want %d containing %q", path, resp.StatusCode, b, code, body)
		}
	}
	check("/healthz", 200, "ok")
	check("/readyz", 503, "waiting for: workflow queue polled")
	ready.Set("workflow queue polled")
	check("/readyz", 503, "waiting for: node queue polled")
	ready.Set("node queue polled")
	check("/readyz", 200, "ready")
	containerdUp.Store(false)
	check("/readyz", 503, "containerd: connection refused")
	containerdUp.Store(true)
	check("/readyz", 200, "ready")
	check("/metrics", 200, WatchedContainers)

	if _, err := Listen(srv.Addr(), m, ready); err == nil || !strings.Contains(err.Error(), "--metrics-address") {
		t.Errorf("a busy address: %v; want an error naming --metrics-address", err)
	}
}
