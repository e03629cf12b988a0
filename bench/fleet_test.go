package main

import (
	"os"
	"os/exec"
	"testing"
)

// A process's tree counts its children: PostgreSQL's backends.
func TestSampleTreeCountsChildren(t *testing.T) {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Skip("no sleep:", err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	tree, err := sampleTree(os.Getpid())
	if err != nil {
		t.Skip("no /proc:", err)
	}
	// Counted by process, not by RSS: a just-exec'd child's RSS is smaller
	// than the noise in our own between two samples.
	if tree.procs < 2 {
		t.Errorf("tree counts %d processes: the child %d is not counted", tree.procs, child.Process.Pid)
	}
}

func TestFleetFilesSpreadTheReplicas(t *testing.T) {
	dir := t.TempDir()
	files, err := fleetFiles(dir, fleetConfig{Replicas: 7, Nodes: 3, Deployments: 2})
	if err != nil || len(files) != 2 {
		t.Fatalf("files %v, %v; want 2", files, err)
	}
	b, _ := os.ReadFile(files[0])
	// Nodes 1 and 3 go to the first deployment: 3 and 2 replicas.
	want := "version: v1\ndeployment: fleet-01\nservices:\n  s001:\n    rtype: service\n    image: { name: sim, pull_policy: never }\n    node: sim-001\n    scale: { mode: fixed, replicas: 3 }\n  s003:\n    rtype: service\n    image: { name: sim, pull_policy: never }\n    node: sim-003\n    scale: { mode: fixed, replicas: 2 }\n"
	if string(b) != want {
		t.Errorf("fleet-01.yaml:\n%s\nwant:\n%s", b, want)
	}
}

// Issue 28's goals: a run that meets each, and one change per goal that
// misses it; a run without the real node has its rows not measured.
func TestFleetGoals(t *testing.T) {
	good := func() *FleetResult {
		return &FleetResult{
			ReplicasRunning: 100000,
			Steady:          &FleetSteady{RequestsPerReplicaHour: 0.008, ClusterCPUPercent: 42, CPUPercent: map[string]float64{"postgres": 20}},
			ListCountsS:     0.4,
			RealNode: &FleetRealNode{
				Latency: Dist{N: 30, P50: 115}, FloorLatency: Dist{N: 30, P50: 90},
				Storm:      &StormResult{Containers: 100, AllRunningSeconds: 7.4, Runs: []float64{7, 7.4, 8}},
				FloorStorm: &StormResult{Containers: 100, AllRunningSeconds: 5, Runs: []float64{4.8, 5, 5.5}},
			},
		}
	}
	const (
		requests = "server requests per healthy replica-hour, node-level apart"
		cpu      = "cluster CPU (Temporal services and PostgreSQL), healthy"
		list     = "vigil list --counts"
		storm    = "100 containers crash at once on node-a -> all running again"
		p50      = "exit -> running p50 on node-a"
	)
	for _, tc := range []struct {
		name   string
		change func(*FleetResult)
		missed string // "" when every goal is met
	}{
		{"all met", func(*FleetResult) {}, ""},
		{"requests", func(r *FleetResult) { r.Steady.RequestsPerReplicaHour = 0.011 }, requests},
		{"cpu", func(r *FleetResult) { r.Steady.ClusterCPUPercent = 50 }, cpu},
		{"list", func(r *FleetResult) { r.ListCountsS = 2.1 }, list},
		{"storm", func(r *FleetResult) { r.RealNode.Storm.AllRunningSeconds = 7.6 }, storm},
		{"p50", func(r *FleetResult) { r.RealNode.Latency.P50 = 121 }, p50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good()
			tc.change(r)
			rows := fleetGoals(r)
			if len(rows) != 5 {
				t.Fatalf("%d rows, want 5: %+v", len(rows), rows)
			}
			for _, g := range rows {
				if want := g.Metric != tc.missed; g.Met != want {
					t.Errorf("%s: met %v with %q, want %v", g.Metric, g.Met, g.After, want)
				}
			}
		})
	}
	r := good()
	r.RealNode, r.Steady = nil, nil
	for _, g := range fleetGoals(r)[3:] {
		if g.Met || g.After != "not measured" {
			t.Errorf("no real node: %s = %q, met %v; want not measured", g.Metric, g.After, g.Met)
		}
	}
	for _, g := range fleetGoals(r)[:2] {
		if g.Met || g.After != "not measured" {
			t.Errorf("no steady state: %s = %q, met %v; want not measured", g.Metric, g.After, g.Met)
		}
	}
}
