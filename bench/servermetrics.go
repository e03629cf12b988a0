package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// serverCounts are the dev server's own counters of what clients asked of
// it (service_requests of the frontend) and of Temporal's billable actions
// (action), in a namespace, by operation. Every request count in the
// bench comes from these, not from Vigil's settings.
type serverCounts struct {
	Requests map[string]float64 `json:"requests"`
	Actions  map[string]float64 `json:"actions"`
}

func scrapeServer(ctx context.Context, url, namespace string) (serverCounts, error) {
	out := serverCounts{Requests: map[string]float64{}, Actions: map[string]float64{}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return out, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out, fmt.Errorf("server metrics: %w", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return out, fmt.Errorf("server metrics: %w", err)
	}
	collect := func(family string, into map[string]float64) {
		f := families[family]
		if f == nil {
			return
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] != namespace || labels["service_name"] != "frontend" {
				continue
			}
			into[labels["operation"]] += m.GetCounter().GetValue()
		}
	}
	collect("service_requests", out.Requests)
	collect("action", out.Actions)
	return out, nil
}

// requestCost is what the server counted over an interval.
type requestCost struct {
	Seconds float64 `json:"interval_s"`
	// Requests excludes the workers' long polls (Poll*), which wait up to a
	// minute for a task and are a per-worker, not per-container, cost (and
	// not billable actions); they are counted in Polls.
	Requests    float64            `json:"requests"`
	Polls       float64            `json:"long_polls"`
	Actions     float64            `json:"actions"`
	ByOperation map[string]float64 `json:"requests_by_operation"`
}

func (c requestCost) perHour(v float64) float64 { return v / (c.Seconds / 3600) }

func diffCounts(before, after serverCounts, d time.Duration) requestCost {
	c := requestCost{Seconds: d.Seconds(), ByOperation: map[string]float64{}}
	for op, v := range after.Requests {
		n := v - before.Requests[op]
		if n <= 0 {
			continue
		}
		c.ByOperation[op] = n
		if strings.HasPrefix(op, "Poll") {
			c.Polls += n
		} else {
			c.Requests += n
		}
	}
	for op, v := range after.Actions {
		c.Actions += v - before.Actions[op]
	}
	return c
}

// String lists the non-poll operations, most frequent first.
func (c requestCost) String() string {
	type kv struct {
		op string
		n  float64
	}
	var ops []kv
	for op, n := range c.ByOperation {
		if !strings.HasPrefix(op, "Poll") {
			ops = append(ops, kv{op, n})
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].n > ops[j].n })
	var b strings.Builder
	for i, o := range ops {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.0f", o.op, o.n)
	}
	return b.String()
}
