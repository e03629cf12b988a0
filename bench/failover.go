package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// FailoverResult is the failover phase: a second node (node-b, its worker
// behind a proxy) is cut off from the server again and again, with the
// default lost_after, while a replica placed over both nodes runs on it.
type FailoverResult struct {
	Partitions int     `json:"partitions"`
	LostAfterS float64 `json:"lost_after_s"`
	// Replacement: from the cut to the replica Running on the bench node.
	Replacement Dist `json:"cut_to_replacement"`
	// Fencing: from the cut to node-b's copy no longer running there.
	Fencing Dist `json:"cut_to_fenced"`
	// Duplicates: times the checker (both containerds every 100 ms) saw a
	// replica running on both nodes. Must be 0.
	Duplicates int `json:"duplicates"`
	// Lease cost while both nodes are healthy, per node-hour, from the
	// server's own counters: renewals (RecordActivityTaskHeartbeat) and the
	// node workflows' lease reads (DescribeWorkflowExecution), and the two
	// together (the goal: at most 720).
	RenewalsPerNodeHour float64 `json:"lease_renewals_per_node_hour"`
	ReadsPerNodeHour    float64 `json:"lease_reads_per_node_hour"`
	RequestsPerNodeHour float64 `json:"lease_requests_per_node_hour"`
}

// failover measures n partitions of node-b.
func (v *vigilBench) failover(ctx context.Context, n int) (*FailoverResult, error) {
	b, err := v.stack.AddNode(ctx, "node-b")
	if err != nil {
		return nil, err
	}
	if err := b.StartWorker(); err != nil {
		return nil, err
	}
	check := stack.Check(v.stack.Containerd, b.Containerd)
	defer check.Close()
	res := &FailoverResult{Partitions: n, LostAfterS: replica.DefaultLostAfter.Seconds()}

	// The lease's cost, both nodes healthy, over a quiet minute.
	time.Sleep(10 * time.Second)
	c0, err := scrapeServer(ctx, v.stack.MetricsURL, "default")
	if err != nil {
		return nil, err
	}
	const quiet = time.Minute
	time.Sleep(quiet)
	c1, err := scrapeServer(ctx, v.stack.MetricsURL, "default")
	if err != nil {
		return nil, err
	}
	cost := diffCounts(c0, c1, quiet)
	res.RenewalsPerNodeHour = cost.perHour(cost.ByOperation["RecordActivityTaskHeartbeat"]) / 2
	res.ReadsPerNodeHour = cost.perHour(cost.ByOperation["DescribeWorkflowExecution"]) / 2
	res.RequestsPerNodeHour = res.RenewalsPerNodeHour + res.ReadsPerNodeHour
	fmt.Printf("    lease, both nodes healthy: %.0f requests per node-hour (%.0f renewals, %.0f lease reads)\n",
		res.RequestsPerNodeHour, res.RenewalsPerNodeHour, res.ReadsPerNodeHour)

	var replacement, fencing []time.Duration
	for i := 1; i <= n && ctx.Err() == nil; i++ {
		dep := fmt.Sprintf("fo%d", i)
		ref := dep + "/f-rep-1"
		id, _ := replica.ParseRef(ref)
		file, err := v.stack.Deployment(dep, stack.PlacedDeployment(dep, "f", "node-b", v.stack.Node))
		if err != nil {
			return nil, err
		}
		if err := v.stack.Supervise(file); err != nil {
			return nil, err
		}
		if _, err := v.stack.WaitFor(ref, "Running on node-b", 2*time.Minute, func(s workflows.StateView) bool {
			return s.State == workflows.StateRunning && s.Node == "node-b"
		}); err != nil {
			return nil, err
		}
		time.Sleep(2 * time.Second)
		cut := time.Now()
		b.Proxy.Cut()
		fenced := make(chan time.Duration, 1)
		go func() {
			name := id.ContainerName()
			for time.Since(cut) < 3*replica.DefaultLostAfter {
				onB, err := stack.RunningTasks(ctx, b.Containerd)
				if err == nil && !slices.Contains(onB, name) {
					fenced <- time.Since(cut)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			fenced <- 0
		}()
		_, err = v.stack.WaitFor(ref, "Running on "+v.stack.Node, 3*replica.DefaultLostAfter, func(s workflows.StateView) bool {
			return s.State == workflows.StateRunning && s.Node == v.stack.Node
		})
		took := time.Since(cut)
		f := <-fenced
		b.Proxy.Restore()
		if err != nil {
			return nil, fmt.Errorf("partition %d: %w", i, err)
		}
		replacement = append(replacement, took)
		if f > 0 {
			fencing = append(fencing, f)
		}
		fmt.Printf("    partition %d: fenced on node-b after %.1f s, replacement running after %.1f s\n", i, f.Seconds(), took.Seconds())
		if r, err := v.stack.Vigil("unsupervise", ref, "--stop"); err != nil || r.Code != 0 {
			return nil, fmt.Errorf("unsupervise %s: %v %s", ref, err, r.Stderr)
		}
		time.Sleep(10 * time.Second) // node-b's lease back
	}
	res.Replacement, res.Fencing, res.Duplicates = dist(replacement), dist(fencing), len(check.Duplicates())
	fmt.Printf("    %d partitions, lost_after %s: replacement %s; fencing %s; %d duplicates\n",
		len(replacement), replica.DefaultLostAfter, res.Replacement, res.Fencing, res.Duplicates)
	return res, nil
}
