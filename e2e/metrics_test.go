package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vigil-run/vigil/metrics"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/workflows"
)

// A worker serving /metrics counts exactly what `vigil status` reports: a
// container that crashes three times (two restarts, then a long backoff)
// shows two restarts, three exits and one backoff; /readyz follows
// containerd going away and coming back.
func TestMetricsAndReadiness(t *testing.T) {
	addr := freeLoopbackAddr(t)
	s := newStack(t, "--metrics-address", addr)
	base := "http://" + addr

	waitHTTP(t, base+"/healthz", http.StatusOK, "ok")
	waitHTTP(t, base+"/readyz", http.StatusOK, "")

	s.supervise(s.deployment("m", crashLoopDeployment("m", 2, "10m")))
	v := s.waitFor("m/crasher-rep-1", "CrashLoopBackOff", 2*time.Minute, inBackoff)
	s.waitFor("m/steady-rep-1", "Running", time.Minute, func(v workflows.StateView) bool {
		return v.State == workflows.StateRunning
	})
	// The SDK hands workflow metrics to Prometheus on its own schedule; wait
	// for the last decision (the backoff) to show.
	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(30 * time.Second)
	for {
		fams = scrape(t, base+"/metrics")
		if value(fams, metrics.CrashLoopBackoffs, map[string]string{"deployment": "m", "service": "crasher"}) >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	crasher := map[string]string{"deployment": "m", "service": "crasher"}
	if got := value(fams, metrics.ContainerRestarts, crasher); got != float64(v.TotalRestarts) || got != 2 {
		t.Errorf("%s = %v; vigil status says %d restarts (want 2)", metrics.ContainerRestarts, got, v.TotalRestarts)
	}
	exited := map[string]string{"deployment": "m", "service": "crasher", "reason": string(runtime.ExitExited)}
	if got := value(fams, metrics.ContainerExits, exited); got != 3 {
		t.Errorf("%s{reason=Exited} = %v, want 3", metrics.ContainerExits, got)
	}
	if got := value(fams, metrics.CrashLoopBackoffs, crasher); got != 1 {
		t.Errorf("%s = %v, want 1", metrics.CrashLoopBackoffs, got)
	}
	if got := value(fams, metrics.ContainerRestarts, map[string]string{"deployment": "m", "service": "steady"}); got != 0 {
		t.Errorf("steady service restarts = %v, want 0", got)
	}
	if h := fams[metrics.RestartLatency]; h == nil || h.Metric[0].GetHistogram().GetSampleCount() != 2 {
		t.Errorf("%s: want 2 samples, got %v", metrics.RestartLatency, h)
	}
	// Only the steady replica is watched: the crasher is down by design. The
	// node watch counts running containers at its scans (every 10 s).
	for deadline := time.Now().Add(30 * time.Second); value(fams, metrics.WatchedContainers, nil) != 1 && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		fams = scrape(t, base+"/metrics")
	}
	if got := value(fams, metrics.WatchedContainers, nil); got != 1 {
		t.Errorf("%s = %v, want 1", metrics.WatchedContainers, got)
	}
	if fams["temporal_request_total"] == nil {
		t.Errorf("the SDK's temporal_request_total is missing")
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "vigil_") {
			continue
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				switch l.GetName() {
				case "deployment", "service", "reason", "op", "kind":
				default:
					t.Errorf("%s has unbounded label %s", name, l.GetName())
				}
			}
		}
	}

	if err := s.Containerd.Stop(); err != nil {
		t.Fatal(err)
	}
	waitHTTP(t, base+"/readyz", http.StatusServiceUnavailable, "containerd")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Containerd.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitHTTP(t, base+"/readyz", http.StatusOK, "")
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitHTTP waits until url answers code with a body containing want.
func waitHTTP(t *testing.T, url string, code int, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var got int
	var body string
	for time.Now().Before(deadline) {
		if got, body = get(t, url); got == code && strings.Contains(body, want) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %d %q; want %d containing %q", url, got, body, code, want)
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value is the counter or gauge with exactly these labels (0 when absent).
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
next:
	for _, m := range f.Metric {
		for k, v := range labels {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	return 0
}
