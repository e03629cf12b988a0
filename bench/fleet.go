package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/internal/cluster"
	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// fleetConfig is the scale phase (make bench-scale): N replicas over M
// simulated nodes (tools/simnode) on a Temporal cluster on PostgreSQL.
type fleetConfig struct {
	Replicas    int           `json:"replicas"`
	Nodes       int           `json:"nodes"`
	Deployments int           `json:"deployments"`
	StormNodes  int           `json:"storm_nodes"`
	Steady      time.Duration `json:"steady_ns"`
	CrashRate   float64       `json:"background_crash_rate_per_hour"`
	Background  time.Duration `json:"background_ns"`
	Timeout     time.Duration `json:"timeout_ns"`
	Label       string        `json:"label,omitempty"`
	// RealNodeStorm is the crash storm's size on node-a, the real node
	// beside the simulated ones (0: no real node); RealNodeRestarts the
	// restart latency's samples there.
	RealNodeStorm    int `json:"real_node_storm"`
	RealNodeRestarts int `json:"real_node_restarts"`
}

func (c *fleetConfig) validate() error {
	switch {
	case c.Replicas < 1:
		return fmt.Errorf("--replicas: %d must be at least 1, e.g. 100000", c.Replicas)
	case c.Nodes < 1 || c.Nodes > 999:
		return fmt.Errorf("--nodes: %d must be between 1 and 999, e.g. 100", c.Nodes)
	case c.Deployments < 1:
		return fmt.Errorf("--deployments: %d must be at least 1, e.g. 10", c.Deployments)
	case c.StormNodes < 0 || c.StormNodes > c.Nodes:
		return fmt.Errorf("--storm-nodes: %d must be between 0 and --nodes (%d)", c.StormNodes, c.Nodes)
	case c.Steady <= 0:
		return fmt.Errorf("--fleet-steady: %s must be positive, e.g. 5m", c.Steady)
	case c.CrashRate < 0:
		return fmt.Errorf("--crash-rate: %v must be 0 or more, e.g. 0.01", c.CrashRate)
	case c.RealNodeStorm < 0:
		return fmt.Errorf("--real-node-storm: %d must be 0 (no real node) or more, e.g. 100", c.RealNodeStorm)
	case c.RealNodeStorm > 0 && c.RealNodeRestarts < 1:
		return fmt.Errorf("--real-node-restarts: %d must be at least 1 with a real node, e.g. 30", c.RealNodeRestarts)
	case c.Label != "" && !labelOK(c.Label):
		return fmt.Errorf("--label: %q: use letters, digits and dashes, e.g. small-proof", c.Label)
	}
	return nil
}

func labelOK(s string) bool {
	for _, r := range s {
		if !(r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// FleetResult is what the scale phase measured.
type FleetResult struct {
	ClusterStartS float64 `json:"cluster_start_s"`
	// ApplyS is the time the `vigil apply` commands took; AllRunningS from
	// the first apply until every replica's workflow publishes Running.
	ApplyS               float64          `json:"apply_s"`
	AllRunningS          float64          `json:"all_running_s"`
	WorkflowsStartedPerS float64          `json:"workflows_started_per_s"`
	ReplicasRunning      int              `json:"replicas_running"`
	Steady               *FleetSteady     `json:"steady_state,omitempty"`
	Storm                *FleetStorm      `json:"storm,omitempty"`
	Background           *FleetBackground `json:"background_crashes,omitempty"`
	Database             *FleetDatabase   `json:"database,omitempty"`
	// DeploymentsSettledS is how long after all were Running the
	// deployment workflows had no activity left (the steady state's start).
	DeploymentsSettledS float64 `json:"deployments_idle_after_s"`
	ListCountsS         float64 `json:"vigil_list_counts_s"`
	ListCrashLoopS      float64 `json:"vigil_list_state_crashloopbackoff_s"`
	// What the cluster spent per replica started (apply until all Running),
	// per restart of the storm, and per run continued as new (the rollover
	// of one node's replicas: the cost of the periodic continue-as-new).
	StartCost         *PhaseCost `json:"cost_per_start,omitempty"`
	StormCost         *PhaseCost `json:"cost_per_storm_restart,omitempty"`
	ContinueAsNewCost *PhaseCost `json:"cost_per_continue_as_new,omitempty"`
	// RealNode is node-a's restart latency and crash storm, on this cluster
	// beside the simulated fleet and on the runtime alone.
	RealNode *FleetRealNode `json:"real_node,omitempty"`
	// FirstLimit is the first limit the run met, as the bench saw it.
	FirstLimit string `json:"first_limit,omitempty"`
	// Goals are issue 28's goals, judged on this run.
	Goals []GoalRow `json:"goals,omitempty"`
}

// FleetSteady is the healthy steady state: the server's own request counts
// (node leases, the node watches' heartbeats, apart) and CPU per process.
type FleetSteady struct {
	Cost                      requestCost        `json:"server"`
	RequestsPerReplicaHour    float64            `json:"requests_per_replica_hour"`
	NodeHeartbeatsPerNodeHour float64            `json:"node_heartbeats_per_node_hour"`
	NodeRequestsPerNodeHour   float64            `json:"node_level_requests_per_node_hour"`
	ActionsPerReplicaHour     float64            `json:"actions_per_replica_hour"`
	CPUPercent                map[string]float64 `json:"cpu_percent_of_one_core"`
	RSSMiB                    map[string]float64 `json:"rss_mib"`
	ClusterCPUPercent         float64            `json:"cluster_cpu_percent_of_one_core"`
}

// FleetStorm is every replica of StormNodes nodes crashing at once.
type FleetStorm struct {
	Nodes        int     `json:"nodes"`
	Crashed      int     `json:"crashed"`
	AllRunningS  float64 `json:"all_running_s"`
	RestartsPerS float64 `json:"restarts_per_s"`
	Latency      Dist    `json:"exit_to_running"`
}

// FleetBackground is a steady rate of crashes over the whole fleet.
type FleetBackground struct {
	RatePerHour float64 `json:"rate_per_hour"`
	Seconds     float64 `json:"interval_s"`
	Latency     Dist    `json:"exit_to_running"`
}

// FleetDatabase is PostgreSQL's size and history growth.
type FleetDatabase struct {
	// EmptyBytes is both databases' size before the first apply: what
	// BytesPerReplica leaves out.
	EmptyBytes          int64   `json:"empty_db_bytes"`
	TemporalBytes       int64   `json:"temporal_db_bytes"`
	VisibilityBytes     int64   `json:"visibility_db_bytes"`
	BytesPerReplica     float64 `json:"bytes_per_replica"`
	HistoryEvents       int64   `json:"history_events"`
	EventsPerReplicaDay float64 `json:"steady_history_events_per_replica_day"`
}

// simnodeProc is a running tools/simnode and its control API.
type simnodeProc struct {
	cmd    *exec.Cmd
	api    string
	exited <-chan error // cmd.Wait's
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	return lastLines(b, 3)
}

func (s *simnodeProc) call(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, s.api+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("simnode %s %s: %s", method, path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// simStats mirrors tools/simnode's GET /stats.
type simStats struct {
	Node    string `json:"node"`
	Running int    `json:"running"`
	Starts  int    `json:"starts"`
}

// simRecoveries mirrors tools/simnode's GET /recoveries.
type simRecoveries struct {
	Millis []float64 `json:"exit_to_running_ms"`
}

func (s *simnodeProc) running(ctx context.Context) (int, error) {
	var st []simStats
	if err := s.call(ctx, http.MethodGet, "/stats", &st); err != nil {
		return 0, err
	}
	n := 0
	for _, x := range st {
		n += x.Running
	}
	return n, nil
}

func (s *simnodeProc) recoveries(ctx context.Context) ([]time.Duration, error) {
	var r simRecoveries
	if err := s.call(ctx, http.MethodGet, "/recoveries", &r); err != nil {
		return nil, err
	}
	ds := make([]time.Duration, len(r.Millis))
	for i, ms := range r.Millis {
		ds[i] = time.Duration(ms * float64(time.Millisecond))
	}
	return ds, nil
}

func nodeName(i int) string { return fmt.Sprintf("sim-%03d", i+1) }

// fleetFiles are the deployment files: nodes dealt round-robin to the
// deployments, one service per node pinned to it, the replicas spread evenly.
func fleetFiles(dir string, cfg fleetConfig) ([]string, error) {
	services := make([][]string, cfg.Deployments)
	for i := range cfg.Nodes {
		n := cfg.Replicas / cfg.Nodes
		if i < cfg.Replicas%cfg.Nodes {
			n++
		}
		if n == 0 {
			continue
		}
		d := i % cfg.Deployments
		services[d] = append(services[d], fmt.Sprintf(`  s%03d:
    rtype: service
    image: { name: sim, pull_policy: never }
    node: %s
    scale: { mode: fixed, replicas: %d }
`, i+1, nodeName(i), n))
	}
	var files []string
	for d, svcs := range services {
		if len(svcs) == 0 {
			continue
		}
		path := filepath.Join(dir, fmt.Sprintf("fleet-%02d.yaml", d+1))
		body := fmt.Sprintf("version: v1\ndeployment: fleet-%02d\nservices:\n%s", d+1, strings.Join(svcs, ""))
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			return nil, err
		}
		files = append(files, path)
	}
	return files, nil
}

// benchFleet is the scale phase.
func benchFleet(ctx context.Context, cfg fleetConfig) (*FleetResult, error) {
	repo, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	vers, err := cluster.ReadVersions(repo)
	if err != nil {
		return nil, err
	}
	if _, err := cluster.Build(ctx, repo, vers, os.Stdout); err != nil {
		return nil, err
	}
	cli, err := temporalCLI()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vbf")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	phase("scale: building vigil and simnode; starting PostgreSQL and the Temporal cluster in %s", dir)
	vigilBin, workerBin, err := stack.Build(".", dir)
	if err != nil {
		return nil, err
	}
	simBin := filepath.Join(dir, "simnode")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", simBin, "./tools/simnode").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build simnode: %w: %s", err, out)
	}
	ports, err := cluster.FreePorts()
	if err != nil {
		return nil, err
	}
	// node-a, when measured, is a real node; its containerd and worker start
	// after the simulated storm (startRealNode): until then the fleet's
	// workflow tasks go to simnode's worker alone.
	opts := cluster.Options{Repo: repo, Dir: filepath.Join(dir, "c"), Ports: ports, Nodes: []string{}, Namespace: "vigil", TemporalCLI: cli}
	if cfg.RealNodeStorm > 0 {
		opts.Nodes = []string{clusterNode}
	}
	c, err := cluster.New(opts)
	if err != nil {
		return nil, err
	}
	res := &FleetResult{}
	v := &vigilBench{dir: dir, cli: cli, cluster: c}
	began := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	err = c.Start(sctx)
	cancel()
	// Closing v removes node-a's containers and stops the cluster.
	defer v.Close(context.Background())
	if err != nil {
		return nil, err
	}
	res.ClusterStartS = round1(time.Since(began).Seconds())
	fmt.Printf("    cluster started in %.1f s\n", res.ClusterStartS)
	const namespace = "default" // the namespace the cluster makes (deploy/cluster/namespace.sh)
	tc, err := client.Dial(client.Options{HostPort: c.Address(), Namespace: namespace, Logger: quietLogger{}})
	if err != nil {
		return nil, err
	}
	defer tc.Close()
	env := append(os.Environ(), "TEMPORAL_ADDRESS="+c.Address(), "TEMPORAL_NAMESPACE="+namespace)

	phase("scale: %d simulated nodes (tools/simnode)", cfg.Nodes)
	sim, err := startSimnode(ctx, simBin, dir, env, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		_ = sim.cmd.Process.Signal(os.Interrupt)
		select {
		case <-sim.exited:
		case <-time.After(30 * time.Second):
			_ = sim.cmd.Process.Kill()
		}
	}()
	pids := func() map[string]int {
		m := map[string]int{"simnode": sim.cmd.Process.Pid, "postgres": c.PID(cluster.PartPostgres)}
		for _, p := range cluster.ServerParts {
			m[p] = c.PID(p)
		}
		return m
	}

	empty, err := dbBytes(ctx, c)
	if err != nil {
		return nil, err
	}
	files, err := fleetFiles(dir, cfg)
	if err != nil {
		return nil, err
	}
	phase("scale: vigil apply: %d replicas in %d deployments over %d nodes", cfg.Replicas, len(files), cfg.Nodes)
	meter, err := startMeter(ctx, c, pids)
	if err != nil {
		return nil, err
	}
	began = time.Now()
	for _, f := range files {
		cmd := exec.CommandContext(ctx, vigilBin, "apply", "-f", f, "--timeout", cfg.Timeout.String())
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return res, fmt.Errorf("vigil apply -f %s: %w: %s", filepath.Base(f), err, lastLines(out, 5))
		}
	}
	res.ApplyS = round1(time.Since(began).Seconds())
	running, err := waitFleetRunning(ctx, tc, namespace, cfg.Replicas, began.Add(cfg.Timeout))
	res.ReplicasRunning = running
	if err != nil {
		res.FirstLimit = fmt.Sprintf("only %d of %d replicas Running within %s", running, cfg.Replicas, cfg.Timeout)
		return res, err
	}
	took := time.Since(began)
	res.AllRunningS = round1(took.Seconds())
	res.WorkflowsStartedPerS = round1(float64(cfg.Replicas) / took.Seconds())
	fmt.Printf("    all %d Running after %.1f s (apply %.1f s): %.1f workflows started/s\n", cfg.Replicas, res.AllRunningS, res.ApplyS, res.WorkflowsStartedPerS)
	if res.StartCost, err = meter.stop(ctx, cfg.Replicas); err != nil {
		return res, err
	}
	fmt.Printf("    start: %s\n", res.StartCost)

	// The deployments' last steps (re-reading the replicas they started)
	// trail the replicas' own starts: the steady state begins after them.
	if res.DeploymentsSettledS, err = waitDeploymentsIdle(ctx, tc, files, cfg.Timeout); err != nil {
		return res, err
	}
	fmt.Printf("    the deployments idle %.1f s after all were Running\n", res.DeploymentsSettledS)
	phase("scale: steady state of %d healthy replicas for %s", cfg.Replicas, cfg.Steady)
	if res.Steady, res.Database, err = fleetSteady(ctx, c, cfg, pids, empty); err != nil {
		return res, fmt.Errorf("steady state: %w", err)
	}
	fmt.Printf("    %.4f requests per replica-hour besides node-level ones (%s); node-level %.0f per node-hour; cluster CPU %.1f %% of a core\n",
		res.Steady.RequestsPerReplicaHour, res.Steady.Cost, res.Steady.NodeRequestsPerNodeHour, res.Steady.ClusterCPUPercent)

	res.ListCountsS, err = timeCLI(ctx, vigilBin, env, "list", "--counts")
	if err != nil {
		return res, err
	}
	res.ListCrashLoopS, err = timeCLI(ctx, vigilBin, env, "list", "--state", "CrashLoopBackOff")
	if err != nil {
		return res, err
	}
	fmt.Printf("    vigil list --counts %.2f s, --state CrashLoopBackOff %.2f s\n", res.ListCountsS, res.ListCrashLoopS)

	phase("scale: storm: every replica of %d nodes crashes at once", cfg.StormNodes)
	if meter, err = startMeter(ctx, c, pids); err != nil {
		return res, err
	}
	if res.Storm, err = fleetStorm(ctx, sim, cfg); err != nil {
		return res, fmt.Errorf("storm: %w", err)
	}
	if res.StormCost, err = meter.stop(ctx, res.Storm.Crashed); err != nil {
		return res, err
	}
	fmt.Printf("    %d crashed; all running again after %.1f s (%.1f restarts/s); exit -> running %s\n",
		res.Storm.Crashed, res.Storm.AllRunningS, res.Storm.RestartsPerS, res.Storm.Latency)

	fmt.Printf("    storm: %s\n", res.StormCost)

	phase("scale: continue-as-new: every replica of %s moves to a new run (vigil rollover)", nodeName(cfg.Nodes-1))
	if meter, err = startMeter(ctx, c, pids); err != nil {
		return res, err
	}
	moved, err := rolloverNode(ctx, tc, cfg)
	if err != nil {
		return res, fmt.Errorf("rollover: %w", err)
	}
	time.Sleep(5 * time.Second) // the new runs' first tasks
	if res.ContinueAsNewCost, err = meter.stop(ctx, moved); err != nil {
		return res, err
	}
	fmt.Printf("    continue-as-new: %s\n", res.ContinueAsNewCost)

	// A failed real node leaves the background crashes measured.
	var realErr error
	if cfg.RealNodeStorm > 0 {
		phase("scale: %s, a real node (containerd and vigil-worker), beside the simulated fleet", clusterNode)
		if realErr = v.startRealNode(ctx, vigilBin, workerBin); realErr == nil {
			res.RealNode, realErr = fleetRealNode(ctx, v, cfg)
		}
		if realErr != nil {
			realErr = fmt.Errorf("%s: %w", clusterNode, realErr)
			fmt.Fprintf(os.Stderr, "bench: %v\n", realErr)
		}
	}

	if cfg.CrashRate > 0 && cfg.Background > 0 {
		phase("scale: background crashes, %.3g of the replicas per hour, for %s", cfg.CrashRate, cfg.Background)
		var out map[string]float64
		if err := sim.call(ctx, http.MethodPost, "/crash-rate?per_hour="+strconv.FormatFloat(cfg.CrashRate, 'g', -1, 64), &out); err != nil {
			return res, err
		}
		time.Sleep(cfg.Background)
		if err := sim.call(ctx, http.MethodPost, "/crash-rate?per_hour=0", &out); err != nil {
			return res, err
		}
		time.Sleep(10 * time.Second) // the last crashes' restarts
		ds, err := sim.recoveries(ctx)
		if err != nil {
			return res, err
		}
		res.Background = &FleetBackground{RatePerHour: cfg.CrashRate, Seconds: cfg.Background.Seconds(), Latency: dist(ds)}
		fmt.Printf("    exit -> running %s\n", res.Background.Latency)
	}
	return res, realErr
}

func startSimnode(ctx context.Context, bin, dir string, env []string, cfg fleetConfig) (*simnodeProc, error) {
	cmd := exec.CommandContext(ctx, bin, "--nodes", strconv.Itoa(cfg.Nodes), "--state-dir", filepath.Join(dir, "sim"), "--log-level", "warn")
	cmd.Env = env
	logf, err := os.Create(filepath.Join(dir, "simnode.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if api, ok := strings.CutPrefix(sc.Text(), "control "); ok {
				line <- api
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case api := <-line:
		return &simnodeProc{cmd: cmd, api: api, exited: exited}, nil
	case err := <-exited:
		return nil, fmt.Errorf("simnode exited (%v): %s", err, tail(filepath.Join(dir, "simnode.log")))
	case <-time.After(10 * time.Minute):
		_ = cmd.Process.Kill()
		return nil, errors.New("simnode did not claim its nodes within 10 minutes; see simnode.log")
	}
}

// countRunning is the number of replicas whose workflow publishes Running:
// a count query, as the server answers it.
func countRunning(ctx context.Context, tc client.Client, namespace string) (int, error) {
	resp, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
		Namespace: namespace, Query: workflows.ReplicasQuery("", "", string(workflows.StateRunning)) + " AND ExecutionStatus = 'Running'",
	})
	if err != nil {
		return 0, err
	}
	return int(resp.GetCount()), nil
}

func waitFleetRunning(ctx context.Context, tc client.Client, namespace string, n int, deadline time.Time) (int, error) {
	last := 0
	for time.Now().Before(deadline) {
		got, err := countRunning(ctx, tc, namespace)
		if err == nil {
			if got != last {
				fmt.Printf("    %s %d Running\n", time.Now().UTC().Format("15:04:05"), got)
			}
			last = got
			if got >= n {
				return got, nil
			}
		}
		time.Sleep(2 * time.Second)
	}
	return last, fmt.Errorf("%d of %d replicas Running by the deadline", last, n)
}

// waitDeploymentsIdle waits until no deployment workflow of files has an
// activity pending, and returns how long that took.
func waitDeploymentsIdle(ctx context.Context, tc client.Client, files []string, within time.Duration) (float64, error) {
	began := time.Now()
	for {
		busy := 0
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), ".yaml")
			desc, err := tc.DescribeWorkflowExecution(ctx, replica.DeploymentWorkflowID(name), "")
			if err != nil || len(desc.GetPendingActivities()) > 0 {
				busy++
			}
		}
		if busy == 0 {
			return round1(time.Since(began).Seconds()), nil
		}
		if time.Since(began) > within {
			return 0, fmt.Errorf("%d deployments still busy %s after all replicas were Running", busy, within)
		}
		time.Sleep(5 * time.Second)
	}
}

// fleetSteady measures the healthy fleet over cfg.Steady: the frontend's
// counters, every process's CPU, and the database before and after.
func fleetSteady(ctx context.Context, c *cluster.Cluster, cfg fleetConfig, pids func() map[string]int, empty int64) (*FleetSteady, *FleetDatabase, error) {
	// Let the starts' last tasks settle first.
	time.Sleep(10 * time.Second)
	events0, _ := historyEventTotal(ctx, c)
	c0, err := scrapeServer(ctx, c.MetricsURL(), "default")
	if err != nil {
		return nil, nil, err
	}
	samples0 := map[string]procSample{}
	for name, pid := range pids() {
		if s, err := sampleTree(pid); err == nil {
			samples0[name] = s
		}
	}
	began := time.Now()
	time.Sleep(cfg.Steady)
	c1, err := scrapeServer(ctx, c.MetricsURL(), "default")
	if err != nil {
		return nil, nil, err
	}
	d := time.Since(began)
	st := &FleetSteady{Cost: diffCounts(c0, c1, d), CPUPercent: map[string]float64{}, RSSMiB: map[string]float64{}}
	for name, pid := range pids() {
		s1, err := sampleTree(pid)
		s0, ok := samples0[name]
		if err != nil || !ok {
			continue
		}
		st.CPUPercent[name] = cpuPercent(s0, s1)
		st.RSSMiB[name] = round1(float64(s1.rssKB) / 1024)
		if name != "simnode" {
			st.ClusterCPUPercent += st.CPUPercent[name]
		}
	}
	st.ClusterCPUPercent = round1(st.ClusterCPUPercent)
	// Node-level costs, reported per node: the node watches' heartbeats
	// (they renew the node leases), their minute reconciliation's roster
	// query, and the SDK's worker heartbeats.
	hb := st.Cost.ByOperation["RecordActivityTaskHeartbeat"] + st.Cost.ByOperation["RecordActivityTaskHeartbeatById"]
	node := hb + st.Cost.ByOperation["ListWorkflowExecutions"] + st.Cost.ByOperation["RecordWorkerHeartbeat"]
	st.NodeHeartbeatsPerNodeHour = round1(st.Cost.perHour(hb) / float64(cfg.Nodes))
	st.NodeRequestsPerNodeHour = round1(st.Cost.perHour(node) / float64(cfg.Nodes))
	st.RequestsPerReplicaHour = round3(st.Cost.perHour(st.Cost.Requests-node) / float64(cfg.Replicas))
	st.ActionsPerReplicaHour = round3(st.Cost.perHour(st.Cost.Actions) / float64(cfg.Replicas))

	db := &FleetDatabase{EmptyBytes: empty}
	db.TemporalBytes, _ = dbSize(ctx, c, "temporal")
	db.VisibilityBytes, _ = dbSize(ctx, c, "temporal_visibility")
	db.BytesPerReplica = round1(float64(db.TemporalBytes+db.VisibilityBytes-empty) / float64(cfg.Replicas))
	if events1, err := historyEventTotal(ctx, c); err == nil {
		db.HistoryEvents = events1
		db.EventsPerReplicaDay = round3(float64(events1-events0) / float64(cfg.Replicas) / d.Hours() * 24)
	}
	return st, db, nil
}

func dbSize(ctx context.Context, c *cluster.Cluster, db string) (int64, error) {
	out, err := c.Query(ctx, db, "SELECT pg_database_size(current_database())")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(out, 10, 64)
}

// historyEventTotal is the number of history events of every workflow run
// the database holds (executions.next_event_id counts one past the last).
func historyEventTotal(ctx context.Context, c *cluster.Cluster) (int64, error) {
	out, err := c.Query(ctx, "temporal", "SELECT COALESCE(SUM(next_event_id - 1), 0) FROM executions")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(out, 10, 64)
}

// fleetStorm crashes every container of the first cfg.StormNodes nodes at
// once and waits for the fleet to run again.
func fleetStorm(ctx context.Context, sim *simnodeProc, cfg fleetConfig) (*FleetStorm, error) {
	if _, err := sim.recoveries(ctx); err != nil { // drain earlier ones
		return nil, err
	}
	want, err := sim.running(ctx)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	for i := range min(cfg.StormNodes, cfg.Nodes) {
		q.Add("node", nodeName(i))
	}
	var crash struct {
		Crashed int `json:"crashed"`
	}
	began := time.Now()
	if err := sim.call(ctx, http.MethodPost, "/crash?"+q.Encode(), &crash); err != nil {
		return nil, err
	}
	deadline := began.Add(cfg.Timeout)
	for {
		got, err := sim.running(ctx)
		if err == nil && got >= want {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d containers running %s after the storm", got, want, cfg.Timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	took := time.Since(began)
	ds, err := sim.recoveries(ctx)
	if err != nil {
		return nil, err
	}
	return &FleetStorm{Nodes: min(cfg.StormNodes, cfg.Nodes), Crashed: crash.Crashed, AllRunningS: round1(took.Seconds()),
		RestartsPerS: round1(float64(crash.Crashed) / took.Seconds()), Latency: dist(ds)}, nil
}

// timeCLI is how long one vigil command takes to answer.
func timeCLI(ctx context.Context, bin string, env []string, args ...string) (float64, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	began := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("vigil %s: %w: %s", strings.Join(args, " "), err, lastLines(out, 3))
	}
	return round3(time.Since(began).Seconds()), nil
}

// sampleTree samples pid and every process below it: PostgreSQL's work is
// done by its backends, children of the postmaster.
func sampleTree(pid int) (procSample, error) {
	total, err := sampleProc(pid)
	if err != nil {
		return total, err
	}
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		if len(f) > 1 {
			parent[child], _ = strconv.Atoi(f[1])
		}
	}
	below := func(p int) bool {
		for range 32 {
			if p = parent[p]; p == pid {
				return true
			} else if p <= 1 {
				return false
			}
		}
		return false
	}
	for child := range parent {
		if child != pid && below(child) {
			if s, err := sampleProc(child); err == nil {
				total.cpu += s.cpu
				total.rssKB += s.rssKB
				total.procs++
			}
		}
	}
	return total, nil
}
