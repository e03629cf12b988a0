// Command bench measures Vigil on this machine, side by side with Docker's
// restart manager: restart latency (with containerd's own floor), the steady
// cost of supervising N healthy containers, a crash storm, the loss of the
// worker, and history growth per crash. It starts everything it needs (a
// private containerd and Temporal dev server, vigil-worker, a private
// dockerd), prints a table and writes JSON under bench/results/.
//
//	go run ./bench [--quick] [--skip-docker] [--out bench/results]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-run/vigil/replica"
)

// config is what one run measures; --quick shrinks every dimension.
type config struct {
	Quick            bool            `json:"quick"`
	Restarts         int             `json:"restarts"`
	DockerRestarts   int             `json:"docker_restarts"`
	DockerLongRuns   int             `json:"docker_long_runs"`
	FloorRestarts    int             `json:"floor_restarts"`
	SteadySizes      []int           `json:"steady_sizes"`
	SteadyInterval   time.Duration   `json:"steady_interval_ns"`
	StormSize        int             `json:"storm_size"`
	LossCrashes      int             `json:"worker_loss_crashes"`
	LossWorkerDown   time.Duration   `json:"worker_loss_down_ns"`
	SkipDocker       bool            `json:"skip_docker"`
	ContainerCommand string          `json:"container_command"`
	Phases           map[string]bool `json:"phases"`
	Cluster          bool            `json:"cluster"`
	// VigilCommit is the revision measured ("" for the working tree).
	VigilCommit string `json:"vigil_commit,omitempty"`
	// Before is a revision whose Vigil phases (latency, scale) are measured
	// too, first, in the same run: the "before" of a side-by-side comparison.
	Before string `json:"before_commit,omitempty"`
	// StormRepeats is how many storms --phases storms measures.
	StormRepeats int `json:"storm_repeats,omitempty"`
	// Partitions is how many partitions the failover phase measures.
	Partitions int `json:"partitions,omitempty"`
	// Fleet is the scale phase's (--phases fleet, make bench-scale).
	Fleet *fleetConfig `json:"fleet,omitempty"`
}

// crashCommand is the crashing container's command the restart latency
// measures: it runs for a second and fails.
const crashCommand = "sleep 1; exit 1"

func main() {
	quick := flag.Bool("quick", false, "a smaller run that finishes in under 5 minutes")
	skipDocker := flag.Bool("skip-docker", false, "do not measure Docker")
	out := flag.String("out", "bench/results", "directory for the results JSON")
	sizes := flag.String("steady", "", "comma-separated steady-state sizes (default 100,1000; quick: 10)")
	phases := flag.String("phases", "floor,confine,latency,docker,scale,rollout,failover", "comma-separated phases to run: floor, confine, latency, docker, scale, rollout, failover (20 partitions of a second node); storms (not by default) supervises --storm containers and crashes them --storm-repeats times, to compare settings")
	stormSize := flag.Int("storm", 0, "containers in the crash storm and the worker-loss test (default 100; quick: 50)")
	interval := flag.Duration("interval", 0, "steady-state measurement interval (default 60s; quick: 20s)")
	commit := flag.String("vigil-commit", "", "measure vigil and vigil-worker built from this git revision (default: the working tree)")
	restarts := flag.Int("restarts", 0, "restarts measured for Vigil and the floor (default 50; quick: 20)")
	onCluster := flag.Bool("cluster", false, "also measure restart latency and the crash storm on a Temporal cluster on PostgreSQL (internal/cluster)")
	stormRepeats := flag.Int("storm-repeats", 0, "how many Vigil crash storms to measure one after another: with --phases storms (for comparing settings), and the cluster's storm (default 3)")
	partitions := flag.Int("partitions", 20, "partitions of node-b the failover phase measures (quick: 3, and the phase only when --phases names it)")
	fleetReplicas := flag.Int("replicas", 100000, "with --phases fleet: replicas supervised over the simulated nodes")
	fleetNodes := flag.Int("nodes", 100, "with --phases fleet: simulated nodes (tools/simnode)")
	fleetDeployments := flag.Int("deployments", 10, "with --phases fleet: deployments the replicas are applied in")
	fleetStormNodes := flag.Int("storm-nodes", 10, "with --phases fleet: nodes whose every replica crashes at once")
	fleetSteady := flag.Duration("fleet-steady", 5*time.Minute, "with --phases fleet: the healthy steady state's measurement interval")
	fleetCrashRate := flag.Float64("crash-rate", 0.01, "with --phases fleet: the background crash rate, a fraction of the replicas per hour")
	fleetBackground := flag.Duration("fleet-background", 10*time.Minute, "with --phases fleet: how long the background crashes are measured (0: not)")
	fleetTimeout := flag.Duration("fleet-timeout", 2*time.Hour, "with --phases fleet: the longest wait for every replica to run")
	realNodeStorm := flag.Int("real-node-storm", 100, "with --phases fleet: the crash storm's size on node-a, a real node (containerd and vigil-worker) beside the simulated ones, measured with its restart latency and both on the runtime alone (0: no real node)")
	realNodeRestarts := flag.Int("real-node-restarts", 30, "with --phases fleet: restarts measured on node-a, on the cluster and on the runtime alone")
	label := flag.String("label", "", "a word added to the results file's name, e.g. small-proof")
	before := flag.String("before", "", "also measure the Vigil phases (latency, scale) of this git revision first, in the same run, and print the two side by side (make bench: the last commit before the node watch)")
	model := flag.String("model", "", "print the capacity model from this scale run's results JSON (make bench-scale) and exit")
	modelCheck := flag.String("model-check", "", "with --model: a smaller scale run whose unit costs predict the --model run's steady state, beside what it measured")
	modelSteady := flag.String("model-steady", "", "with --model: a steady-state window measured beside that run (bench/results/*-steady.json) to use instead of the run's own")
	flag.Parse()
	if *model != "" {
		if err := printModel(os.Stdout, *model, *modelCheck, *modelSteady); err != nil {
			fmt.Fprintf(os.Stderr, "bench: --model: %v\n", err)
			os.Exit(1)
		}
		return
	}

	cfg := config{
		Restarts: 50, FloorRestarts: 30, DockerRestarts: 10, DockerLongRuns: 4,
		SteadySizes: []int{100, 1000}, SteadyInterval: 60 * time.Second,
		StormSize: 100, LossCrashes: 10, LossWorkerDown: 3 * time.Second,
		SkipDocker: *skipDocker, ContainerCommand: crashCommand, VigilCommit: *commit,
		Cluster: *onCluster, Before: *before, StormRepeats: *stormRepeats, Partitions: *partitions,
	}
	if *quick {
		cfg.Quick = true
		cfg.Restarts, cfg.FloorRestarts, cfg.DockerRestarts, cfg.DockerLongRuns = 20, 10, 6, 0
		cfg.SteadySizes, cfg.SteadyInterval = []int{10}, 20*time.Second
		cfg.StormSize = 50
		cfg.Partitions = min(cfg.Partitions, 3)
	}
	if *restarts > 0 {
		cfg.Restarts = *restarts
	}
	if *stormSize > 0 {
		cfg.StormSize = *stormSize
	}
	if *interval > 0 {
		cfg.SteadyInterval = *interval
	}
	if *sizes != "" {
		cfg.SteadySizes = nil
		for _, s := range strings.Split(*sizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "bench: --steady: %q is not a positive number; write e.g. --steady 10,100\n", s)
				os.Exit(2)
			}
			cfg.SteadySizes = append(cfg.SteadySizes, n)
		}
	}
	cfg.Phases = map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "floor", "confine", "latency", "docker", "scale", "rollout", "failover", "storms", "fleet":
			cfg.Phases[p] = true
		default:
			fmt.Fprintf(os.Stderr, "bench: --phases: %q is not one of floor, confine, latency, docker, scale, rollout, failover, storms, fleet\n", p)
			os.Exit(2)
		}
	}
	phasesSet := false
	flag.Visit(func(f *flag.Flag) { phasesSet = phasesSet || f.Name == "phases" })
	if cfg.Quick && !phasesSet {
		// Partitions take lost_after (30 s) and more each: not in the
		// five quick minutes unless asked for.
		delete(cfg.Phases, "failover")
	}
	if cfg.Phases["fleet"] {
		if len(cfg.Phases) > 1 {
			fmt.Fprintln(os.Stderr, "bench: --phases: fleet runs alone (it has its own cluster); give --phases fleet")
			os.Exit(2)
		}
		f := &fleetConfig{Replicas: *fleetReplicas, Nodes: *fleetNodes, Deployments: *fleetDeployments, StormNodes: *fleetStormNodes,
			Steady: *fleetSteady, CrashRate: *fleetCrashRate, Background: *fleetBackground, Timeout: *fleetTimeout, Label: *label,
			RealNodeStorm: *realNodeStorm, RealNodeRestarts: *realNodeRestarts}
		if err := f.validate(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(2)
		}
		cfg.Fleet = f
	}
	if err := run(cfg, *out); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// Results is the JSON written under bench/results/.
type Results struct {
	Started  time.Time         `json:"started"`
	Duration string            `json:"duration"`
	Machine  Machine           `json:"machine"`
	Config   config            `json:"config"`
	Latency  LatencyResults    `json:"restart_latency"`
	Steady   []SteadyResult    `json:"steady_state"`
	Storm    StormResults      `json:"crash_storm"`
	Loss     *WorkerLossResult `json:"worker_loss,omitempty"`
	// Node is the node-level cost: the steady state with no container.
	Node        *SteadyResult      `json:"node_level,omitempty"`
	BackoffKill *BackoffKillResult `json:"backoff_across_worker_kill,omitempty"`
	History     *HistoryResult     `json:"history_per_crash,omitempty"`
	Rollout     *RolloutResult     `json:"rolling_update,omitempty"`
	Failover    *FailoverResult    `json:"failover,omitempty"`
	// Confinement is the start latency with the default confinement and without.
	Confinement *ConfinementResult `json:"start_confinement,omitempty"`
	Cluster     *ClusterResults    `json:"cluster,omitempty"`
	// Before holds the Vigil phases of config.Before, measured in this run
	// (its floor and Docker rows are this run's, not repeated).
	Before *Results `json:"before,omitempty"`
	// Goals compares before and after with the goals of the liveness issue.
	Goals []GoalRow `json:"goals,omitempty"`
	// Fleet is the scale phase's (--phases fleet).
	Fleet *FleetResult `json:"fleet,omitempty"`
	// Storms are the storms of --phases storms.
	Storms []*StormResult `json:"storms,omitempty"`
	Errors []string       `json:"errors,omitempty"`
}

// StormResults compare the same storm under Vigil, under the runtime
// alone (no Temporal) and under Docker.
type StormResults struct {
	Vigil  *StormResult `json:"vigil,omitempty"`
	Floor  *StormResult `json:"floor_vigil_runtime,omitempty"`
	Docker *StormResult `json:"docker,omitempty"`
}

// Machine is where the numbers were taken.
type Machine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	MemoryGiB  int    `json:"memory_gib"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	Containerd string `json:"containerd"`
	Runc       string `json:"runc"`
	Temporal   string `json:"temporal_cli"`
	Docker     string `json:"docker,omitempty"`
	Commit     string `json:"vigil_commit"`
	// LoadAtStart and LoadAtEnd are /proc/loadavg's 1, 5 and 15 minute
	// figures at the start and at the end of the run: other work on a
	// shared machine moves every number.
	LoadAtStart string `json:"load_average_at_start"`
	LoadAtEnd   string `json:"load_average_at_end,omitempty"`
}

func run(cfg config, outDir string) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (containerd and dockerd need it)")
	}
	ctx := context.Background()
	res := &Results{Started: time.Now().UTC(), Config: cfg, Machine: machine()}
	fail := func(what string, err error) {
		msg := fmt.Sprintf("%s: %v", what, err)
		fmt.Fprintln(os.Stderr, "bench: "+msg)
		res.Errors = append(res.Errors, msg)
	}

	if cfg.Fleet != nil {
		phase("scale: %d replicas over %d simulated nodes on a Temporal cluster on PostgreSQL", cfg.Fleet.Replicas, cfg.Fleet.Nodes)
		var err error
		if res.Fleet, err = benchFleet(ctx, *cfg.Fleet); err != nil {
			fail("fleet", err)
		}
		res.Machine.LoadAtEnd = loadAverage()
		if res.Fleet != nil {
			res.Fleet.Goals = fleetGoals(res.Fleet)
			printFleet(res.Fleet, res.Machine)
		}
		res.Duration = time.Since(res.Started).Round(time.Second).String()
		path, err := writeResults(res, outDir)
		if err != nil {
			return err
		}
		fmt.Printf("\nresults: %s\n", path)
		if len(res.Errors) > 0 {
			return fmt.Errorf("%d measurement(s) failed; see errors in %s", len(res.Errors), path)
		}
		return nil
	}
	// The cluster first, stopped before the dev server starts: neither
	// measures while the other's processes run.
	if cfg.Cluster {
		phase("cluster: restart latency and a crash storm of %d on a Temporal cluster on PostgreSQL", cfg.StormSize)
		var err error
		if res.Cluster, err = benchCluster(ctx, cfg); err != nil {
			fail("cluster", err)
		}
	}

	if cfg.Before != "" {
		phase("BEFORE: the Vigil phases of %s (latency, scale), for the side-by-side comparison", cfg.Before)
		res.Before = &Results{Started: time.Now().UTC(), Config: cfg}
		res.Before.Config.VigilCommit, res.Before.Config.Before = cfg.Before, ""
		if err := vigilPhases(ctx, cfg, cfg.Before, res.Before, nil); err != nil {
			fail("before ("+cfg.Before+")", err)
		}
		res.Before.Duration = time.Since(res.Before.Started).Round(time.Second).String()
		phase("AFTER: the working tree")
	}
	if err := vigilPhases(ctx, cfg, cfg.VigilCommit, res, fail); err != nil {
		return err
	}

	res.Machine.LoadAtEnd = loadAverage()
	res.Goals = goals(res)
	res.Duration = time.Since(res.Started).Round(time.Second).String()
	if res.Before != nil {
		fmt.Printf("\n==================== BEFORE: %s ====================", cfg.Before)
		printTable(res.Before)
		fmt.Printf("\n==================== AFTER: %s ====================", res.Machine.Commit)
	}
	printTable(res)
	printConfinement(res.Confinement)
	printGoals(res)
	path, err := writeResults(res, outDir)
	if err != nil {
		return err
	}
	fmt.Printf("\nresults: %s\n", path)
	if n := len(res.Errors) + len(res.Before.errors()); n > 0 {
		return fmt.Errorf("%d measurement(s) failed; see errors in %s", n, path)
	}
	return nil
}

func phase(format string, args ...any) {
	fmt.Printf("==> %s %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func writeResults(res *Results, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	kind := "full"
	switch {
	case res.Config.Quick:
		kind = "quick"
	case res.Config.Fleet != nil:
		kind = "scale"
		if res.Config.Fleet.Label != "" {
			kind += "-" + res.Config.Fleet.Label
		}
	}
	name := fmt.Sprintf("%s-%s.json", res.Started.Format("20060102T150405Z"), kind)
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}

func machine() Machine {
	m := Machine{CPUs: goruntime.NumCPU(), Go: goruntime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
		m.MemoryGiB = int((kb + 1<<19) >> 20)
	}
	m.Kernel = firstLine("uname", "-r")
	m.Containerd = firstLine("containerd", "--version")
	m.Runc = firstLine("runc", "--version")
	m.Commit = firstLine("git", "rev-parse", "--short", "HEAD")
	m.LoadAtStart = loadAverage()
	return m
}

// stormRuns is how many times a storm is repeated: once in a quick run.
func (c config) stormRuns() int {
	if c.Quick {
		return 1
	}
	return stormRuns
}

func (r *Results) errors() []string {
	if r == nil {
		return nil
	}
	return r.Errors
}

// loadAverage is the 1, 5 and 15 minute load averages, as /proc/loadavg has them.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// vigilPhases measures one build of Vigil (commit, or the working tree) on
// its own fresh installation: the floor, latency, Docker, scale and rollout
// phases for the main run (fail records a phase's error and goes on), only
// latency and scale for a "before" (fail nil: its errors go to res).
func vigilPhases(ctx context.Context, cfg config, commit string, res *Results, fail func(string, error)) error {
	before := fail == nil
	if before {
		fail = func(what string, err error) {
			msg := fmt.Sprintf("%s: %v", what, err)
			fmt.Fprintln(os.Stderr, "bench: before: "+msg)
			res.Errors = append(res.Errors, msg)
		}
	}
	v, err := startVigil(ctx, commit)
	if err != nil {
		return err
	}
	defer v.Close(ctx)
	res.Machine.Temporal = v.temporalVersion()

	if cfg.Phases["floor"] && !before {
		phase("floor: containerd restart without Temporal (%d restarts)", cfg.FloorRestarts)
		if res.Latency.FloorClient, res.Latency.FloorRuntime, err = v.floor(ctx, cfg); err != nil {
			fail("floor", err)
		}
		phase("floor: crash storm of %d without Temporal", cfg.StormSize)
		if res.Storm.Floor, err = medianStorm(cfg.stormRuns(), func(int) (*StormResult, error) { return v.floorStorm(ctx, cfg.StormSize) }); err != nil {
			fail("floor storm", err)
		}
	}
	if cfg.Phases["confine"] && !before {
		phase("start latency with the default confinement and with none (%d starts each)", cfg.Restarts)
		if res.Confinement, err = v.confinement(ctx, cfg.Restarts); err != nil {
			fail("confinement", err)
		}
	}
	if cfg.Phases["latency"] {
		phase("Vigil restart latency (%d restarts of %q)", cfg.Restarts, cfg.ContainerCommand)
		lat, err := v.restartLatency(ctx, cfg)
		if err != nil {
			fail("vigil restart latency", err)
		}
		if lat != nil {
			res.Latency.Vigil = lat.dist
			res.Latency.Breakdown = lat.breakdown
			res.History = lat.history
		}
	}

	if !cfg.SkipDocker && cfg.Phases["docker"] && !before {
		phase("Docker --restart always (%d restarts; %d of a container that runs 11 s; a storm of %d)", cfg.DockerRestarts, cfg.DockerLongRuns, cfg.StormSize)
		if err := dockerLatency(ctx, cfg, res); err != nil {
			fail("docker", err)
		}
	}

	if cfg.Phases["scale"] {
		if err := v.scale(ctx, cfg, res); err != nil {
			fail("scale", err)
		}
	}

	if cfg.Phases["storms"] {
		phase("%d crash storms of %d supervised containers", max(cfg.StormRepeats, 1), cfg.StormSize)
		set := &replicaSet{}
		if err := v.superviseHealthy(ctx, set, "storms", cfg.StormSize); err != nil {
			return err
		}
		for i := 0; i < max(cfg.StormRepeats, 1); i++ {
			time.Sleep(5 * time.Second)
			phase("crash storm %d: %d containers SIGKILLed at once", i+1, cfg.StormSize)
			r, err := v.storm(ctx, set, cfg.StormSize)
			if err != nil {
				fail("storm", err)
				continue
			}
			res.Storms = append(res.Storms, r)
		}
	}
	if cfg.Phases["rollout"] && !before {
		phase("rolling update of 10 replicas, min_ready 5s")
		if res.Rollout, err = v.rollout(ctx, 10, 5*time.Second); err != nil {
			fail("rollout", err)
		}
	}
	if cfg.Phases["failover"] && !before {
		phase("failover: %d partitions of node-b (lost_after %s)", cfg.Partitions, replica.DefaultLostAfter)
		if res.Failover, err = v.failover(ctx, cfg.Partitions); err != nil {
			fail("failover", err)
		}
	}
	return nil
}

func firstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}
