package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/internal/cluster"
	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/internal/stack"
)

// ClusterResults are the same measurements as the dev server's, on the
// production path: a Temporal cluster on PostgreSQL (internal/cluster, four
// server processes) and node-a's containerd and worker.
type ClusterResults struct {
	StartSeconds float64      `json:"cluster_start_s"`
	Latency      Dist         `json:"restart_latency"`
	Breakdown    *Breakdown   `json:"restart_breakdown,omitempty"`
	Storm        *StormResult `json:"crash_storm,omitempty"`
}

// clusterNode is the node the cluster bench runs on (the cluster has one
// node here: the figures compare servers, not nodes).
const clusterNode = "node-a"

// startCluster starts a cluster in a temporary directory on free ports and
// returns it as a vigilBench whose CLI, client and event stream point at it.
func startCluster(ctx context.Context) (*vigilBench, float64, error) {
	repo, err := os.Getwd()
	if err != nil {
		return nil, 0, err
	}
	v, err := cluster.ReadVersions(repo)
	if err != nil {
		return nil, 0, err
	}
	if _, err := cluster.Build(ctx, repo, v, os.Stdout); err != nil {
		return nil, 0, err
	}
	cli, err := temporalCLI()
	if err != nil {
		return nil, 0, err
	}
	dir, err := os.MkdirTemp("", "vbc")
	if err != nil {
		return nil, 0, err
	}
	// PostgreSQL runs as the postgres user: it must reach its data below.
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, 0, err
	}
	phase("cluster: building vigil and vigil-worker; starting PostgreSQL, the Temporal cluster and %s in %s", clusterNode, dir)
	vigilBin, workerBin, err := stack.Build(".", dir)
	if err != nil {
		return nil, 0, err
	}
	ports, err := cluster.FreePorts()
	if err != nil {
		return nil, 0, err
	}
	c, err := cluster.New(cluster.Options{Repo: repo, Dir: filepath.Join(dir, "c"), Ports: ports,
		Nodes: []string{clusterNode}, Namespace: "vigil", VigilWorker: workerBin, TemporalCLI: cli})
	if err != nil {
		return nil, 0, err
	}
	b := &vigilBench{dir: dir, cli: cli, cluster: c}
	began := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := c.Start(sctx); err != nil {
		b.Close(ctx)
		return nil, 0, err
	}
	start := round1(time.Since(began).Seconds())
	if err := b.onClusterNode(ctx, vigilBin); err != nil {
		b.Close(ctx)
		return nil, 0, err
	}
	return b, start, nil
}

// onClusterNode points a vigilBench on a started cluster at clusterNode:
// its CLI, client, event stream and the processes whose CPU a storm reports.
func (b *vigilBench) onClusterNode(ctx context.Context, vigilBin string) error {
	c := b.cluster
	b.stack = &stack.Stack{
		Options:  stack.Options{Dir: b.dir, VigilBin: vigilBin, Node: clusterNode},
		HostPort: c.Address(),
		// Only its address and namespace are used: the cluster owns the daemon.
		Containerd: &containerdtest.Daemon{Address: c.ContainerdAddress(clusterNode), Namespace: c.Namespace},
	}
	b.pids = func() map[string]int {
		pids := map[string]int{"vigil-worker": c.PID(cluster.VigilWorkerPart(clusterNode)), "containerd": c.PID(cluster.ContainerdPart(clusterNode)), "postgres": c.PID(cluster.PartPostgres)}
		for _, p := range cluster.ServerParts {
			pids[p] = c.PID(p)
		}
		return pids
	}
	var err error
	if b.tc, err = client.Dial(client.Options{HostPort: c.Address(), Logger: quietLogger{}}); err != nil {
		return err
	}
	b.events, err = subscribe(ctx, c.ContainerdAddress(clusterNode), c.Namespace)
	return err
}

// closeCluster removes the containers and stops the cluster.
func (v *vigilBench) closeCluster(ctx context.Context) {
	if v.stack != nil {
		_ = v.cluster.StopPart(cluster.VigilWorkerPart(clusterNode))
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Minute)
		if err := v.removeContainers(rctx); err != nil {
			fmt.Fprintf(os.Stderr, "bench: remove containers: %v\n", err)
		}
		rcancel()
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := v.cluster.Stop(sctx); err != nil {
		fmt.Fprintf(os.Stderr, "bench: stop the cluster: %v\n", err)
	}
	_ = os.RemoveAll(v.dir)
}

// benchCluster measures restart latency and the crash storm on the cluster.
func benchCluster(ctx context.Context, cfg config) (*ClusterResults, error) {
	v, start, err := startCluster(ctx)
	if err != nil {
		return nil, err
	}
	defer v.Close(ctx)
	res := &ClusterResults{StartSeconds: start}
	fmt.Printf("    cluster started in %.1f s\n", start)
	phase("cluster: Vigil restart latency (%d restarts of %q)", cfg.Restarts, cfg.ContainerCommand)
	lat, err := v.restartLatency(ctx, cfg)
	if lat != nil {
		res.Latency, res.Breakdown = lat.dist, lat.breakdown
		fmt.Printf("    %s\n", lat.dist)
	}
	if err != nil {
		return res, fmt.Errorf("restart latency: %w", err)
	}
	set := &replicaSet{}
	if err := v.superviseHealthy(ctx, set, "storm", cfg.StormSize); err != nil {
		return res, fmt.Errorf("supervise %d for the storm: %w", cfg.StormSize, err)
	}
	runs := cfg.stormRuns()
	if cfg.StormRepeats > 0 {
		runs = cfg.StormRepeats
	}
	phase("cluster: crash storm: %d containers SIGKILLed at once, %d times", cfg.StormSize, runs)
	// Repeated as the dev server's storm is: one storm swings by tens of percent.
	if res.Storm, err = medianStorm(runs, func(i int) (*StormResult, error) {
		if i > 0 {
			time.Sleep(5 * time.Second) // the last storm's starts have settled
		}
		return v.storm(ctx, set, cfg.StormSize)
	}); err != nil {
		return res, fmt.Errorf("crash storm: %w", err)
	}
	return res, nil
}

// quietLogger drops the SDK client's own log lines.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
