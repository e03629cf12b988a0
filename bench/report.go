package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// LatencyResults: exit -> next task start, from containerd's timestamps.
type LatencyResults struct {
	// FloorClient restarts with the bare containerd client: delete, new task, start.
	FloorClient Dist `json:"floor_containerd_client"`
	// FloorRuntime restarts through Vigil's runtime as EnsureRunning does, without Temporal.
	FloorRuntime Dist       `json:"floor_vigil_runtime"`
	Vigil        Dist       `json:"vigil"`
	Breakdown    *Breakdown `json:"vigil_breakdown,omitempty"`
	// Docker with a container that runs 1 s: its delay doubles on every restart.
	Docker Dist `json:"docker"`
	// DockerCurve is each of those restarts in order, in ms; DockerBackoff the
	// delay Docker's restart manager waited before each (100 ms doubling).
	DockerCurve   []float64 `json:"docker_curve_ms,omitempty"`
	DockerBackoff []float64 `json:"docker_backoff_ms,omitempty"`
	// DockerMinusBackoff is Docker's latency less its own deliberate delay.
	DockerMinusBackoff Dist `json:"docker_minus_backoff"`
	// DockerLong restarts a container that ran 11 s: the delay stays 100 ms.
	DockerLong Dist `json:"docker_after_10s_run"`
}

// dockerBackoff is the delay moby's restart manager waits before restart i
// (from 0) of a container that keeps running less than 10 s.
func dockerBackoff(i int) time.Duration {
	d := 100 * time.Millisecond
	for ; i > 0 && d < time.Minute; i-- {
		d *= 2
	}
	return min(d, time.Minute)
}

func dockerLatency(ctx context.Context, cfg config, res *Results) error {
	dir, err := os.MkdirTemp("", "vd")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d, err := startDocker(ctx, dir)
	if err != nil {
		return err
	}
	defer d.Close(ctx)
	res.Machine.Docker = d.version()
	te, err := subscribe(ctx, d.containerd.Address, dockerNamespace)
	if err != nil {
		return err
	}
	defer te.Close()

	run := func(name, cmd string) (string, error) {
		return d.run("run", "-d", "--name", name, "--network", "none", "--restart", "always",
			"busybox:local", "/bin/sh", "-c", cmd)
	}
	var wg sync.WaitGroup
	var longErr error
	if cfg.DockerLongRuns > 0 {
		// Concurrently: it sleeps most of the time, as the other one does.
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := run("long", "sleep 11; exit 1")
			if err != nil {
				longErr = err
				return
			}
			lctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.DockerLongRuns)*15*time.Second+time.Minute)
			defer cancel()
			lat, err := te.waitRestarts(lctx, id, cfg.DockerLongRuns)
			res.Latency.DockerLong, longErr = dist(lat), err
		}()
	}
	id, err := run("lat", cfg.ContainerCommand)
	if err != nil {
		return err
	}
	var budget time.Duration
	for i := 0; i < cfg.DockerRestarts; i++ {
		budget += dockerBackoff(i) + 3*time.Second
	}
	lctx, cancel := context.WithTimeout(ctx, budget+time.Minute)
	defer cancel()
	lat, err := te.waitRestarts(lctx, id, cfg.DockerRestarts)
	res.Latency.Docker = dist(lat)
	var minus []time.Duration
	for i, l := range lat {
		res.Latency.DockerCurve = append(res.Latency.DockerCurve, round1(float64(l.Microseconds())/1000))
		res.Latency.DockerBackoff = append(res.Latency.DockerBackoff, float64(dockerBackoff(i).Milliseconds()))
		minus = append(minus, l-dockerBackoff(i))
	}
	res.Latency.DockerMinusBackoff = dist(minus)
	fmt.Printf("    docker curve (ms): %v\n", res.Latency.DockerCurve)
	wg.Wait()
	if err != nil {
		return err
	}
	if longErr != nil {
		return longErr
	}

	ids := make([]string, cfg.StormSize)
	if err := parallel(len(ids), 4, func(i int) (err error) {
		ids[i], err = run(fmt.Sprintf("storm%d", i+1), "exec sleep 100000")
		return err
	}); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	res.Storm.Docker, err = storm(ctx, te, d.containerd.Address, dockerNamespace, ids, nil)
	return err
}

func printTable(r *Results) {
	m := r.Machine
	fmt.Printf("\nVigil bench, %s, %s run in %s\n", r.Started.Format(time.RFC3339), kind(r), r.Duration)
	fmt.Printf("machine: %d CPUs (%s), %d GiB; kernel %s; %s; runc %s; %s; docker %s\n\n",
		m.CPUs, m.CPUModel, m.MemoryGiB, m.Kernel, m.Containerd, strings.TrimPrefix(m.Runc, "runc version "), m.Temporal, m.Docker)

	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	l := r.Latency
	fmt.Fprintln(w, "RESTART LATENCY (exit -> next start)\tp50 ms\tp95 ms\tp99 ms\tn")
	row := func(name string, d Dist) {
		if d.N == 0 {
			fmt.Fprintf(w, "%s\t-\t-\t-\t0\n", name)
			return
		}
		fmt.Fprintf(w, "%s\t%.0f\t%.0f\t%.0f\t%d\n", name, d.P50, d.P95, d.P99, d.N)
	}
	row("floor: containerd client (delete+new task+start)", l.FloorClient)
	row("floor: Vigil runtime, no Temporal", l.FloorRuntime)
	row("Vigil", l.Vigil)
	row("Docker --restart always, 1 s runs (backoff grows)", l.Docker)
	row("Docker, less its own backoff delay", l.DockerMinusBackoff)
	row("Docker, 11 s runs (backoff stays 100 ms)", l.DockerLong)
	w.Flush()
	if l.Vigil.N > 0 && l.FloorRuntime.N > 0 {
		fmt.Printf("Vigil above the runtime floor: p50 +%.0f ms, p99 +%.0f ms\n", l.Vigil.P50-l.FloorRuntime.P50, l.Vigil.P99-l.FloorRuntime.P99)
	}
	if len(l.DockerCurve) > 0 {
		fmt.Printf("Docker's curve, ms (backoff before each): %v (%v)\n", l.DockerCurve, l.DockerBackoff)
	}
	if b := l.Breakdown; b != nil && b.Cycles > 0 {
		fmt.Printf("\nWHERE VIGIL'S RESTART TIME GOES (medians over %d cycles, ms)\n", b.Cycles)
		printBreakdown(b)
	}
	if h := r.History; h != nil {
		fmt.Printf("\nHISTORY PER CRASH: %.1f events, %.1f workflow tasks, %.1f activities per restart; continue-as-new every %d restarts (~%d events per run)\n",
			h.EventsPerRestart, h.WorkflowTasksPerCycle, h.ActivitiesPerCycle, h.ContinueAsNewEveryRestarts, h.EventsPerRun)
	}
	if len(r.Steady) > 0 || r.Node != nil {
		fmt.Println("\nSTEADY STATE (healthy containers; requests counted by the dev server, long polls aside)")
		w = tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(w, "N\tinterval s\thistory events/container-h\trequests/container-h\tactions/container-h\tworker CPU %\tworker RSS MiB\tdev server CPU %\tdev server RSS MiB")
		if n := r.Node; n != nil {
			fmt.Fprintf(w, "node level (0)\t%.0f\t-\t%.0f per node-h\t%.0f per node-h\t%.1f\t%.0f\t%.1f\t%.0f\n", n.IntervalSeconds,
				n.Server.perHour(n.Server.Requests), n.Server.perHour(n.Server.Actions), n.WorkerCPUPercent, n.WorkerRSSMiB, n.ServerCPUPercent, n.ServerRSSMiB)
		}
		for _, s := range r.Steady {
			fmt.Fprintf(w, "%d\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.1f\t%.0f\n", s.Containers, s.IntervalSeconds, s.EventsPerContainerHour,
				s.RequestsPerContainerHour, s.ActionsPerContainerHour, s.WorkerCPUPercent, s.WorkerRSSMiB, s.ServerCPUPercent, s.ServerRSSMiB)
		}
		w.Flush()
		if n := r.Node; n != nil {
			fmt.Printf("node level by operation: %s; long polls %.0f per worker-hour\n", n.Server, n.Server.perHour(n.Server.Polls))
		}
	}
	if r.Storm.Vigil != nil || r.Storm.Floor != nil || r.Storm.Docker != nil {
		fmt.Println("\nCRASH STORM (all SIGKILLed at once)")
		w = tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(w, "\tcontainers\tall running again s\tper container p50 ms\tp99 ms")
		for _, s := range []struct {
			name string
			r    *StormResult
		}{{"floor: Vigil runtime, no Temporal", r.Storm.Floor}, {"Vigil", r.Storm.Vigil}, {"Docker", r.Storm.Docker}} {
			if s.r != nil {
				fmt.Fprintf(w, "%s\t%d\t%.2f\t%.0f\t%.0f\n", s.name, s.r.Containers, s.r.AllRunningSeconds, s.r.PerContainer.P50, s.r.PerContainer.P99)
			}
		}
		w.Flush()
	}
	if c := r.Cluster; c != nil {
		printCluster(r, c)
	}
	if s := r.Loss; s != nil {
		fmt.Printf("WORKER LOSS: %d supervised, worker SIGKILLed, %d crashed, new worker %.1f s later: all %d running %.2f s after the new worker started, %.2f s after the crash\n",
			s.Supervised, s.Crashed, s.WorkerDownSeconds, s.Crashed, s.FromWorkerStartSeconds, s.FromCrashSeconds)
	}
	if b := r.BackoffKill; b != nil {
		fmt.Printf("BACKOFF ACROSS A WORKER KILL: a %.0f s crash-loop backoff, worker SIGKILLed during it and a new one started: the container started %v s after the deadline (max %.3f s)\n",
			b.BackoffSeconds, b.LateSeconds, b.MaxLate)
	}
	for _, e := range r.Errors {
		fmt.Printf("ERROR: %s\n", e)
	}
}

func kind(r *Results) string {
	if r.Config.Quick {
		return "quick"
	}
	return "full"
}

func printBreakdown(b *Breakdown) {
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "    exit -> reported to the workflow\t%.1f\n", b.ExitToReported)
	fmt.Fprintf(w, "    -> workflow task started (handoff 1)\t%.1f\n", b.ReportedToDecision)
	fmt.Fprintf(w, "    workflow task (policy.Decide, commands)\t%.1f\n", b.Decision)
	fmt.Fprintf(w, "    -> EnsureRunning started (handoff 2)\t%.1f\n", b.DecisionToStart)
	fmt.Fprintf(w, "    EnsureRunning started -> task start\t%.1f\n", b.StartActivityToTask)
	fmt.Fprintf(w, "    sum\t%.1f\n", b.Sum)
	fmt.Fprintf(w, "    (after the start) task start -> EnsureRunning completed\t%.1f\n", b.TaskToStartCompleted)
	if b.StartCompletedToWatch > 0 {
		fmt.Fprintf(w, "    (after the start) -> next WaitForExit started\t%.1f\n", b.StartCompletedToWatch)
	}
	w.Flush()
	if len(b.Trouble) > 0 {
		fmt.Printf("    meanwhile in history: %v\n", b.Trouble)
	}
}

// printCluster puts the cluster's figures beside the dev server's.
func printCluster(r *Results, c *ClusterResults) {
	fmt.Printf("\nDEV SERVER vs TEMPORAL CLUSTER ON POSTGRESQL (cluster started in %.1f s)\n", c.StartSeconds)
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\trestart p50 ms\tp95 ms\tp99 ms\tn\tstorm: containers\tall running again s\tper container p50 ms\tp99 ms")
	row := func(name string, d Dist, s *StormResult) {
		fmt.Fprintf(w, "%s\t%.0f\t%.0f\t%.0f\t%d", name, d.P50, d.P95, d.P99, d.N)
		if s != nil {
			fmt.Fprintf(w, "\t%d\t%.2f\t%.0f\t%.0f\n", s.Containers, s.AllRunningSeconds, s.PerContainer.P50, s.PerContainer.P99)
		} else {
			fmt.Fprint(w, "\t-\t-\t-\t-\n")
		}
	}
	row("dev server (SQLite)", r.Latency.Vigil, r.Storm.Vigil)
	row("cluster (PostgreSQL, 4 processes)", c.Latency, c.Storm)
	w.Flush()
	if b := c.Breakdown; b != nil && b.Cycles > 0 {
		fmt.Printf("WHERE THE CLUSTER'S RESTART TIME GOES (medians over %d cycles, ms)\n", b.Cycles)
		printBreakdown(b)
	}
	if c.Storm != nil && c.Storm.Breakdown != nil {
		fmt.Println("CLUSTER STORM BREAKDOWN")
		printBreakdown(c.Storm.Breakdown)
	}
	if c.Storm != nil && len(c.Storm.CPUSeconds) > 0 {
		fmt.Printf("CLUSTER CPU seconds during the storm: %v\n", c.Storm.CPUSeconds)
	}
}
