package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
)

// sdkReportInterval is how often tally hands the SDK's metrics to Prometheus.
const sdkReportInterval = time.Second

// Handler is the client.MetricsHandler the worker's Temporal client uses. The
// SDK's own metrics go through its tally integration, named as the SDK
// documents them (temporal_*); the names Vigil's workflows record go to
// Vigil's collectors with exactly their contract labels (the SDK's default
// tags, such as namespace and task_queue, are dropped for them).
func (m *Metrics) Handler() (client.MetricsHandler, func(), error) {
	reporter, err := tallyprom.Configuration{TimerType: "histogram"}.NewReporter(
		tallyprom.ConfigurationOptions{Registry: m.Registry})
	if err != nil {
		return nil, nil, err
	}
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &sdktally.PrometheusSanitizeOptions,
	}, sdkReportInterval)
	sdk := sdktally.NewMetricsHandler(sdktally.NewPrometheusNamingScope(scope))
	return &handler{m: m, sdk: sdk}, func() { _ = closer.Close() }, nil
}

type handler struct {
	m    *Metrics
	sdk  client.MetricsHandler
	tags map[string]string
}

func (h *handler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := make(map[string]string, len(h.tags)+len(tags))
	for k, v := range h.tags {
		merged[k] = v
	}
	for k, v := range tags {
		merged[k] = v
	}
	return &handler{m: h.m, sdk: h.sdk.WithTags(tags), tags: merged}
}

func (h *handler) Counter(name string) client.MetricsCounter {
	if _, ok := h.m.byCounter[name]; ok {
		return counter{m: h.m, name: name, tags: h.tags}
	}
	return h.sdk.Counter(name)
}

func (h *handler) Gauge(name string) client.MetricsGauge { return h.sdk.Gauge(name) }

func (h *handler) Timer(name string) client.MetricsTimer {
	if name == RestartLatency {
		return timer{h.m.latency}
	}
	return h.sdk.Timer(name)
}

type counter struct {
	m    *Metrics
	name string
	tags map[string]string
}

func (c counter) Inc(n int64) {
	c.m.Counter(c.name, c.tags[LabelDeployment], c.tags[LabelService], c.tags[LabelReason]).Add(float64(n))
}

type timer struct{ h prometheus.Histogram }

func (t timer) Record(d time.Duration) { t.h.Observe(d.Seconds()) }
