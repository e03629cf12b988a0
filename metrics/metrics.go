// Package metrics is what vigil-worker tells Prometheus: the Temporal SDK's
// own metrics (through the SDK's tally integration) and Vigil's, on one
// registry served at /metrics next to /healthz and /readyz.
//
// Where each Vigil metric is counted, so that none counts twice:
//   - exits, restarts, crash-loop backoffs and restart latency are decisions
//     the replica's workflow makes once; it records them through the SDK's
//     replay-aware workflow metrics handler (workflow.GetMetricsHandler), so
//     a replay, a retried activity or a workflow moved to another worker never
//     counts again. They land on the worker that ran the workflow task: they
//     are exact per worker and sum across workers.
//   - runtime errors and watched containers are node work: the node's
//     activities count them around their containerd calls.
//
// Labels stay bounded: deployment, service, reason, op and kind; never a
// container ID, a replica number or a time.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

// The names and labels of Vigil's own metrics (a contract: dashboards and
// alerts use them).
const (
	ContainerExits    = "vigil_container_exits_total"
	ContainerRestarts = "vigil_container_restarts_total"
	CrashLoopBackoffs = "vigil_crash_loop_backoffs_total"
	RestartLatency    = "vigil_restart_latency_seconds"
	WatchedContainers = "vigil_watched_containers"
	RuntimeErrors     = "vigil_runtime_errors_total"

	LabelDeployment = "deployment"
	LabelService    = "service"
	LabelReason     = "reason"
	LabelOp         = "op"
	LabelKind       = "kind"
)

// restartLatencyBuckets span a fast restart (~0.1 s) to a slow pull (~1 min).
var restartLatencyBuckets = []float64{0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30, 60}

// Metrics holds Vigil's collectors on their registry.
type Metrics struct {
	Registry *prometheus.Registry

	exits     *prometheus.CounterVec
	restarts  *prometheus.CounterVec
	backoffs  *prometheus.CounterVec
	latency   prometheus.Histogram
	watched   prometheus.Gauge
	rtErrors  *prometheus.CounterVec
	byCounter map[string]*prometheus.CounterVec
}

// New makes Vigil's collectors on a new registry, with the Go and process
// collectors every Prometheus target is expected to have.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		exits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ContainerExits,
			Help: "Container exits the supervisor acted on, by reason (Exited, Signaled, OOMKilled, Unhealthy, Failed, Lost).",
		}, []string{LabelDeployment, LabelService, LabelReason}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ContainerRestarts,
			Help: "Restarts after a crash, as counted in `vigil status` (operator restarts are not crashes).",
		}, []string{LabelDeployment, LabelService}),
		backoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: CrashLoopBackoffs,
			Help: "Crash-loop backoffs entered.",
		}, []string{LabelDeployment, LabelService}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    RestartLatency,
			Help:    "Time from containerd's exit of a crashed task to its replacement running (immediate restarts, not backoffs).",
			Buckets: restartLatencyBuckets,
		}),
		watched: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: WatchedContainers,
			Help: "Containers this worker watches for exits now.",
		}),
		rtErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: RuntimeErrors,
			Help: "containerd calls that failed, by operation and typed error kind.",
		}, []string{LabelOp, LabelKind}),
	}
	m.byCounter = map[string]*prometheus.CounterVec{
		ContainerExits:    m.exits,
		ContainerRestarts: m.restarts,
		CrashLoopBackoffs: m.backoffs,
	}
	reg.MustRegister(m.exits, m.restarts, m.backoffs, m.latency, m.watched, m.rtErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Watched is the gauge of containers watched now (Inc when a watch starts,
// Dec when it ends).
func (m *Metrics) Watched() prometheus.Gauge { return m.watched }

// Counter is the counter of a decision metric (ContainerExits, ContainerRestarts
// or CrashLoopBackoffs) for one service; reason is used by ContainerExits only.
// It is how tests and tools read a value.
func (m *Metrics) Counter(name, deployment, service, reason string) prometheus.Counter {
	l := prometheus.Labels{LabelDeployment: deployment, LabelService: service}
	if name == ContainerExits {
		l[LabelReason] = reason
	}
	return m.byCounter[name].With(l)
}

// RestartLatencyCount is the number of restart latencies observed.
func (m *Metrics) RestartLatencyCount() uint64 {
	var out dto.Metric
	if err := m.latency.Write(&out); err != nil {
		return 0
	}
	return out.GetHistogram().GetSampleCount()
}
