package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// A run that meets every goal, and one change per goal that misses it.
func TestGoals(t *testing.T) {
	good := func() *Results {
		r := &Results{Config: config{SteadySizes: []int{100, 1000}, StormSize: 100, Before: "abc"}}
		r.Node = &SteadyResult{Server: requestCost{Seconds: 120, Requests: 2}}
		r.Steady = []SteadyResult{
			{Containers: 100, RequestsPerContainerHour: 0.5, ServerCPUPercent: 1, WorkerCPUPercent: 1},
			{Containers: 1000, RequestsPerContainerHour: 0.1, ServerCPUPercent: 3, WorkerCPUPercent: 1},
		}
		r.Loss = &WorkerLossResult{FromWorkerStartSeconds: 1.2}
		r.BackoffKill = &BackoffKillResult{LateSeconds: []float64{0.1, 0.2}, MaxLate: 0.2}
		r.Storm = StormResults{Vigil: &StormResult{AllRunningSeconds: 7}, Floor: &StormResult{AllRunningSeconds: 6}, Docker: &StormResult{AllRunningSeconds: 30}}
		r.Latency.Vigil, r.Latency.FloorRuntime = Dist{N: 50, P50: 110}, Dist{N: 30, P50: 90}
		r.Before = &Results{Steady: []SteadyResult{{Containers: 100, RequestsPerContainerHour: 700}}}
		r.Confinement = &ConfinementResult{Defaults: Dist{N: 50, P50: 40}, None: Dist{N: 50, P50: 38}, AddedP50: 2}
		return r
	}
	rows := goals(good())
	if len(rows) != 9 {
		t.Fatalf("%d rows, want 9: %+v", len(rows), rows)
	}
	for _, g := range rows {
		if !g.Met {
			t.Errorf("%s: not met with %q", g.Metric, g.After)
		}
	}
	if b := rows[0].Before; !strings.HasPrefix(b, "700.0") {
		t.Errorf("before at 100 = %q, want the before run's 700.0", b)
	}
	if b := rows[1].Before; b != "not measured" {
		t.Errorf("before at 1000 = %q, want not measured", b)
	}

	misses := map[string]func(*Results){
		"server requests per healthy container-hour, 1000 containers":               func(r *Results) { r.Steady[1].RequestsPerContainerHour = 1.5 },
		"node-level requests (no container)":                                        func(r *Results) { r.Node.Server.Requests = 5 },
		"dev server / worker CPU (% of a core), healthy containers":                 func(r *Results) { r.Steady[1].WorkerCPUPercent = 5 },
		"crashed while the worker was dead -> running, from the new worker's start": func(r *Results) { r.Loss.FromWorkerStartSeconds = 2.5 },
		"crash-loop backoff across a worker SIGKILL ends after its deadline by":     func(r *Results) { r.BackoffKill.MaxLate = 1.1 },
		"100 containers crash at once -> all running again":                         func(r *Results) { r.Storm.Docker.AllRunningSeconds = 6.9 },
		"exit -> running p50": func(r *Results) { r.Latency.Vigil.P50 = 121 },
		"start p50 added by the default confinement (issue 26)": func(r *Results) { r.Confinement.AddedP50 = 5.1 },
	}
	for metric, miss := range misses {
		r := good()
		miss(r)
		found := false
		for _, g := range goals(r) {
			if g.Metric == metric {
				found = true
				if g.Met {
					t.Errorf("%s: met with %q", metric, g.After)
				}
			} else if !g.Met {
				t.Errorf("changing %s made %s fail", metric, g.Metric)
			}
		}
		if !found {
			t.Errorf("no row %q", metric)
		}
	}
	// The storm ratio alone can miss too.
	r := good()
	r.Storm.Vigil.AllRunningSeconds = 9.1
	if rows := goals(r); rows[6].Met {
		t.Errorf("storm 9.1 s vs 6 s met: %+v", rows[6])
	}
}

func TestMedianStorm(t *testing.T) {
	times := []float64{9, 7, 8}
	r, err := medianStorm(3, func(i int) (*StormResult, error) { return &StormResult{AllRunningSeconds: times[i]}, nil })
	if err != nil || r.AllRunningSeconds != 8 || fmt.Sprint(r.Runs) != "[7 8 9]" {
		t.Fatalf("median of %v = %+v, %v; want 8 with runs [7 8 9]", times, r, err)
	}
	r, err = medianStorm(2, func(i int) (*StormResult, error) {
		if i == 0 {
			return nil, errors.New("boom")
		}
		return &StormResult{AllRunningSeconds: 5}, nil
	})
	if err == nil || r == nil || r.AllRunningSeconds != 5 {
		t.Fatalf("one failed storm of two = %+v, %v; want the other and the error", r, err)
	}
}
