package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/workflows"
)

// dashboardFile is the Grafana dashboard the compose stack provisions.
const dashboardFile = "../deploy/grafana/vigil.json"

// Every query of the Grafana dashboard runs on a real Prometheus (Debian's)
// scraping a real worker, and returns data: the dashboard's names and labels
// are the ones the worker serves.
func TestDashboardQueriesOnPrometheus(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		containerdtest.Unavailable(t, "prometheus not installed (apt-get install prometheus)")
	}
	metricsAddr := freeLoopbackAddr(t)
	s := newStack(t, "--metrics-address", metricsAddr)
	prom := startPrometheus(t, promBin, metricsAddr)

	s.supervise(s.deployment("dash", crashLoopDeployment("dash", 2, "10m")))
	s.waitFor("dash/crasher-rep-1", "CrashLoopBackOff", 2*time.Minute, inBackoff)
	s.waitFor("dash/steady-rep-1", "Running", time.Minute, func(v workflows.StateView) bool {
		return v.State == workflows.StateRunning
	})
	// Prometheus has the final count once it scraped after the backoff, and
	// rate() and increase() need a few samples of each series.
	waitQuery(t, prom, `vigil_crash_loop_backoffs_total{deployment="dash",service="crasher"} == 1`)
	waitQuery(t, prom, `vigil_container_restarts_total{deployment="dash",service="crasher"} == 2`)
	waitQuery(t, prom, `count_over_time(vigil_crash_loop_backoffs_total[1m]) >= 3`)

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if len(dash.Panels) < 6 {
		t.Fatalf("%s has %d panels, want at least 6", dashboardFile, len(dash.Panels))
	}
	for _, p := range dash.Panels {
		for i, target := range p.Targets {
			// Grafana's own variable, as Grafana would fill it in.
			expr := strings.ReplaceAll(target.Expr, "$__rate_interval", "1m")
			n, err := query(prom, expr)
			if err != nil {
				t.Errorf("panel %q: %s: %v", p.Title, expr, err)
				continue
			}
			// The first query of every panel has data by now.
			if i == 0 && n == 0 {
				t.Errorf("panel %q: %s returned no series", p.Title, expr)
			}
		}
	}
}

func startPrometheus(t *testing.T, bin, target string) string {
	t.Helper()
	dir := t.TempDir()
	addr := freeLoopbackAddr(t)
	cfg := fmt.Sprintf(`global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: vigil-worker
    static_configs:
      - targets: [%q]
        labels: { node: e2e }
`, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file", cfgPath, "--storage.tsdb.path", filepath.Join(dir, "data"),
		"--web.listen-address", addr, "--log.level", "warn")
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	base := "http://" + addr
	waitHTTP(t, base+"/-/ready", http.StatusOK, "")
	return base
}

// query runs an instant query and returns how many series it returned.
func query(base, expr string) (int, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, err
	}
	if out.Status != "success" {
		return 0, fmt.Errorf("prometheus: %s", out.Error)
	}
	return len(out.Data.Result), nil
}

// waitQuery waits until expr returns at least one series.
func waitQuery(t *testing.T, base, expr string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if n, err := query(base, expr); err == nil && n > 0 {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("prometheus: %s returned nothing within a minute", expr)
}
