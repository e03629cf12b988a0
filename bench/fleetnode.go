package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// FleetRealNode is node-a, a real node (containerd and vigil-worker) in the
// fleet's cluster, measured while the simulated fleet is supervised: make
// bench's restart latency and crash storm, on the cluster and on the
// runtime alone (no Temporal), in the same run.
type FleetRealNode struct {
	Latency      Dist    `json:"restart_latency"`
	FloorLatency Dist    `json:"restart_latency_runtime_alone"`
	AddedP50Ms   float64 `json:"restart_p50_added_ms"`
	// Storm and FloorStorm are the medians of stormRuns storms each.
	Storm      *StormResult `json:"crash_storm,omitempty"`
	FloorStorm *StormResult `json:"crash_storm_runtime_alone,omitempty"`
	StormRatio float64      `json:"crash_storm_ratio,omitempty"`
}

// startRealNode starts node-a's containerd (with the test image) and
// vigil-worker on the running cluster and points v at them.
func (v *vigilBench) startRealNode(ctx context.Context, vigilBin, workerBin string) error {
	v.cluster.VigilWorker = workerBin
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := v.cluster.StartContainerd(sctx, clusterNode); err != nil {
		return err
	}
	if err := v.cluster.StartVigilWorker(sctx, clusterNode); err != nil {
		return err
	}
	return v.onClusterNode(ctx, vigilBin)
}

// fleetRealNode measures node-a as make bench does: the runtime alone's
// restarts, the cluster's restarts of the same crashing container, then the
// crash storm of cfg.RealNodeStorm supervised containers and of as many on
// the runtime alone. A failed part leaves the others measured.
func fleetRealNode(ctx context.Context, v *vigilBench, fc fleetConfig) (*FleetRealNode, error) {
	cfg := config{Restarts: fc.RealNodeRestarts, FloorRestarts: fc.RealNodeRestarts, ContainerCommand: crashCommand, StormSize: fc.RealNodeStorm}
	r := &FleetRealNode{}
	var errs []error
	phase("scale: %s: restart without Temporal (%d restarts of %q)", clusterNode, cfg.FloorRestarts, cfg.ContainerCommand)
	_, floor, err := v.floor(ctx, cfg)
	if err != nil {
		errs = append(errs, fmt.Errorf("runtime alone's restarts: %w", err))
	}
	r.FloorLatency = floor
	fmt.Printf("    runtime alone: %s\n", floor)
	phase("scale: %s: restart latency on the cluster (%d restarts)", clusterNode, cfg.Restarts)
	lat, err := v.restartLatency(ctx, cfg)
	if lat != nil {
		r.Latency = lat.dist
		fmt.Printf("    cluster: %s\n", lat.dist)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("restart latency: %w", err))
	}
	if r.Latency.N > 0 && r.FloorLatency.N > 0 {
		r.AddedP50Ms = round1(r.Latency.P50 - r.FloorLatency.P50)
	}

	set := &replicaSet{}
	if err := v.superviseHealthy(ctx, set, "storm", cfg.StormSize); err != nil {
		return r, errors.Join(append(errs, fmt.Errorf("supervise %d for the storm: %w", cfg.StormSize, err))...)
	}
	phase("scale: %s: crash storm of %d on the cluster, %d times", clusterNode, cfg.StormSize, stormRuns)
	r.Storm, err = medianStorm(stormRuns, func(i int) (*StormResult, error) {
		if i > 0 {
			time.Sleep(5 * time.Second) // the last storm's starts have settled
		}
		return v.storm(ctx, set, cfg.StormSize)
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("crash storm: %w", err))
	}
	phase("scale: %s: crash storm of %d on the runtime alone, %d times", clusterNode, cfg.StormSize, stormRuns)
	r.FloorStorm, err = medianStorm(stormRuns, func(int) (*StormResult, error) { return v.floorStorm(ctx, cfg.StormSize) })
	if err != nil {
		errs = append(errs, fmt.Errorf("runtime alone's crash storm: %w", err))
	}
	if r.Storm != nil && r.FloorStorm != nil && r.FloorStorm.AllRunningSeconds > 0 {
		r.StormRatio = round3(r.Storm.AllRunningSeconds / r.FloorStorm.AllRunningSeconds)
	}
	return r, errors.Join(errs...)
}

// fleetGoals are issue 28's goals, judged on one run of the scale phase.
func fleetGoals(r *FleetResult) []GoalRow {
	var rows []GoalRow
	add := func(metric, goal, after string, ok, met bool) {
		row := GoalRow{Metric: metric, Goal: goal, After: "not measured"}
		if ok {
			row.After, row.Met = after, met
		}
		rows = append(rows, row)
	}
	st := r.Steady
	add("server requests per healthy replica-hour, node-level apart", "<= 0.01",
		func() string {
			if st == nil {
				return ""
			}
			return fmt.Sprintf("%.4f at %d replicas (node-level %.0f per node-hour)", st.RequestsPerReplicaHour, r.ReplicasRunning, st.NodeRequestsPerNodeHour)
		}(), st != nil, st != nil && st.RequestsPerReplicaHour <= 0.01)
	add("cluster CPU (Temporal services and PostgreSQL), healthy", "< 50 % of one core",
		func() string {
			if st == nil {
				return ""
			}
			return fmt.Sprintf("%.1f %%", st.ClusterCPUPercent)
		}(), st != nil && len(st.CPUPercent) > 0, st != nil && st.ClusterCPUPercent < 50)
	add("vigil list --counts", "<= 2 s", fmt.Sprintf("%.2f s", r.ListCountsS), r.ListCountsS > 0, r.ListCountsS > 0 && r.ListCountsS <= 2)
	n := r.RealNode
	if n == nil {
		n = &FleetRealNode{}
	}
	size := 0
	if n.Storm != nil {
		size = n.Storm.Containers
	}
	storm, ok := stormVsFloor(n.Storm, n.FloorStorm)
	add(fmt.Sprintf("%d containers crash at once on %s -> all running again", size, clusterNode), "<= 1.5x the runtime alone",
		storm, ok, stormMet(n.Storm, n.FloorStorm))
	p50, ok := p50VsFloor(n.Latency, n.FloorLatency)
	add(fmt.Sprintf("exit -> running p50 on %s", clusterNode), "<= runtime alone + 30 ms", p50, ok, p50Met(n.Latency, n.FloorLatency))
	return rows
}

// printFleet prints the storms side by side (the simulated nodes' and
// node-a's, one run of the cluster) and the goals table.
func printFleet(r *FleetResult, m Machine) {
	fmt.Printf("\nSTORMS, one run of the cluster (%s)\n", m.Commit)
	fmt.Printf("%-44s %8s %12s %11s  %s\n", "", "crashed", "all running", "restarts/s", "exit -> running")
	if s := r.Storm; s != nil {
		fmt.Printf("%-44s %8d %10.1f s %11.1f  %s\n", fmt.Sprintf("simulated: every replica of %d nodes", s.Nodes), s.Crashed, s.AllRunningS, s.RestartsPerS, s.Latency)
	}
	if n := r.RealNode; n != nil {
		for _, row := range []struct {
			name string
			s    *StormResult
		}{{clusterNode + " (containerd): on the cluster", n.Storm}, {clusterNode + " (containerd): runtime alone", n.FloorStorm}} {
			if s := row.s; s != nil && s.AllRunningSeconds > 0 {
				fmt.Printf("%-44s %8d %10.2f s %11.1f  %s  median of %v s\n", row.name, s.Containers, s.AllRunningSeconds,
					float64(s.Containers)/s.AllRunningSeconds, s.PerContainer, s.Runs)
			}
		}
		if n.StormRatio > 0 {
			fmt.Printf("%-44s %.2fx\n", clusterNode+": cluster / runtime alone", n.StormRatio)
		}
		fmt.Printf("restart latency on %s (%q): cluster %s; runtime alone %s; p50 %+.0f ms\n",
			clusterNode, crashCommand, n.Latency, n.FloorLatency, n.AddedP50Ms)
	}
	fmt.Printf("\nGOALS (issue 28), this run\n")
	printGoalRows(r.Goals, false)
	fmt.Printf("load average (1, 5, 15 min): %s at the start, %s at the end\n", m.LoadAtStart, m.LoadAtEnd)
}
