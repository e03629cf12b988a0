package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/internal/ctrevents"
	"github.com/vigil-run/vigil/internal/stack"
)

// config is one soak's parameters.
type config struct {
	Seed     uint64
	Duration time.Duration // how long faults are injected
	Replicas int
	// MaxFaults bounds the faults injected; MinGap and MaxGap the pauses between them.
	MaxFaults      int
	MinGap, MaxGap time.Duration
	// Warmup runs the replicas before the first fault; Heal lets the last
	// fault heal before the checks (a bound, not a wait: checks retry within it).
	Warmup, Heal time.Duration
	// ExitsPerRun, if positive, adds a crasher supervised beside the
	// deployment whose supervisor continues as new after that many exits.
	ExitsPerRun int
	// Faults, when set, are the only fault kinds injected.
	Faults []faultKind
	// Keep keeps the soak's directory (logs, database) even when it passes.
	Keep bool
	Repo string // the module to build vigil and vigil-worker from
	Out  io.Writer
}

// report is what a soak found.
type report struct {
	Seed       uint64
	Faults     []fault
	Rows       []row
	Violations []string
	Dir        string
}

func (c config) logf(format string, args ...any) {
	fmt.Fprintf(c.Out, "%s chaos: %s\n", time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// soak runs one chaos soak: it starts a whole installation, supervises the
// roster, injects faults for Duration, lets them heal and checks the
// invariants. An error means the soak could not run; violations are in the report.
func soak(ctx context.Context, cfg config) (*report, error) {
	replicas, err := roster(cfg.Replicas)
	if err != nil {
		return nil, err
	}
	cli, err := stack.FindTemporalCLI()
	if err != nil {
		return nil, err
	}
	if err := containerdtest.Prerequisites(); err != nil {
		return nil, err
	}
	// Short: the containerd socket lives under it.
	dir, err := os.MkdirTemp("", "chaos")
	if err != nil {
		return nil, err
	}
	rep := &report{Seed: cfg.Seed, Dir: dir}
	cfg.logf("seed %d, %d replicas, faults for %s (at most %d, every %s-%s), state in %s",
		cfg.Seed, len(replicas), cfg.Duration, cfg.MaxFaults, cfg.MinGap, cfg.MaxGap, dir)

	cfg.logf("building vigil and vigil-worker")
	vigilBin, workerBin, err := stack.Build(cfg.Repo, filepath.Join(dir, "bin"))
	if err != nil {
		return nil, err
	}
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	st, err := stack.Start(startCtx, stack.Options{Dir: dir, TemporalCLI: cli, VigilBin: vigilBin, WorkerBin: workerBin, Node: "chaos"})
	cancel()
	if err != nil {
		return nil, err
	}
	passed := false
	defer func() {
		if !passed {
			fmt.Fprintf(cfg.Out, "\n--- worker logs (tail) ---\n%s\n--- containerd log (tail) ---\n%s\n", st.WorkerLogTail(30), st.Containerd.LogTail(20))
		}
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := st.Close(cctx); err != nil {
			cfg.logf("stopping the stack: %v", err)
		}
		if passed && !cfg.Keep {
			_ = os.RemoveAll(dir)
		} else {
			cfg.logf("kept %s (worker logs, containerd log, temporal.db, container logs)", dir)
		}
	}()

	rec, err := ctrevents.Record(ctx, st.Containerd.Address, st.Containerd.Namespace)
	if err != nil {
		return nil, err
	}
	defer rec.Close()

	if err := st.StartWorker(); err != nil {
		return nil, err
	}
	var nodeB *stack.Node
	var check *stack.Checker
	if cfg.Faults == nil || slices.Contains(cfg.Faults, faultPartition) {
		if nodeB, check, err = addPartitionNode(ctx, st); err != nil {
			return nil, err
		}
		defer check.Close()
		cfg.logf("%s added for the partition fault; both containerds checked every %s", partitionNode, stack.CheckInterval)
	}
	file, err := st.Deployment(deploymentName, deploymentYAML(replicas))
	if err != nil {
		return nil, err
	}
	// Supervising is idempotent; a dev server that has just started may not
	// know its namespace on every call yet.
	for attempt := 1; ; attempt++ {
		err := st.Supervise(file)
		if err == nil {
			break
		}
		if attempt == 5 {
			return nil, err
		}
		cfg.logf("supervise failed (attempt %d), retrying: %v", attempt, err)
		time.Sleep(2 * time.Second)
	}
	c, err := st.Client()
	if err != nil {
		return rep, err
	}
	defer c.Close()
	checked := replicas
	if cfg.ExitsPerRun > 0 {
		b := boundedReplica(cfg.ExitsPerRun)
		if err := superviseBounded(ctx, c, b); err != nil {
			return nil, err
		}
		checked = append(slices.Clone(replicas), b)
		cfg.logf("supervising %s beside the deployment, continued as new after %d exits", b.ID.Ref(), b.ExitsPerRun)
	}
	live := newLiveness(st, c, checked, cfg.Heal, cfg.logf)
	liveCtx, stopLive := context.WithCancel(ctx)
	liveDone := make(chan struct{})
	go func() { live.run(liveCtx); close(liveDone) }()
	defer func() { stopLive(); <-liveDone }()
	cfg.logf("supervising %d replicas; warming up for %s", len(checked), cfg.Warmup)
	sleepCtx(ctx, cfg.Warmup)

	drv := &driver{st: st, b: nodeB, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), replicas: replicas,
		MinGap: cfg.MinGap, MaxGap: cfg.MaxGap, MaxFaults: cfg.MaxFaults, Kinds: cfg.Faults, logf: cfg.logf}
	drv.run(ctx, time.Now().Add(cfg.Duration))
	rep.Faults = drv.faults()
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	// A failed fault may have left a daemon down.
	if err := heal(ctx, st, drv.serverDown); err != nil {
		return rep, err
	}
	cfg.logf("%d faults injected; letting the last one heal (checks retry for up to %s)", len(rep.Faults), cfg.Heal)

	killed, uncertain := hits(rep.Faults)
	chk := &checker{st: st, client: c, rec: rec, replicas: checked, logf: cfg.logf, killed: killed, uncertain: uncertain, reboots: reboots(rep.Faults)}
	rep.Rows, rep.Violations = chk.check(ctx, cfg.Heal)
	stopLive()
	<-liveDone
	liveViolations, samples := live.result()
	cfg.logf("liveness: %d samples of containerd's tasks against the replicas' states judged", samples)
	if samples == 0 {
		liveViolations = append(liveViolations, "liveness: no sample of containerd's tasks and the replicas' states was taken")
	}
	rep.Violations = append(rep.Violations, liveViolations...)
	rep.Violations = append(rep.Violations, workerLogProblems(st)...)
	rep.Violations = append(rep.Violations, duplicates(check)...)
	if check != nil {
		cfg.logf("two nodes: %d reads of both containerds, %d sightings of two running copies", check.Rounds(), len(check.Duplicates()))
	}
	passed = len(rep.Violations) == 0
	return rep, nil
}

// heal makes sure every daemon runs after the last fault.
func heal(ctx context.Context, st *stack.Stack, serverDown bool) error {
	if serverDown {
		if err := st.StartServer(ctx); err != nil {
			return err
		}
	}
	if st.Containerd.PID() == 0 {
		if err := st.Containerd.Start(ctx); err != nil {
			return err
		}
	}
	if st.WorkerPID() == 0 {
		return st.StartWorker()
	}
	return nil
}

// workerLogProblems finds panics and nondeterminism in every worker's log.
func workerLogProblems(st *stack.Stack) []string {
	var out []string
	paths, _ := filepath.Glob(filepath.Join(st.Dir, "worker-*.log"))
	more, _ := filepath.Glob(filepath.Join(st.Dir, "*", "worker-*.log")) // other nodes'
	paths = append(paths, more...)
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			out = append(out, err.Error())
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			lower := strings.ToLower(line)
			// Not "panic" alone: the panic action's decisions are logged too.
			if strings.HasPrefix(line, "panic:") || strings.Contains(lower, "workflow panic") ||
				strings.Contains(lower, "panicerror") || strings.Contains(lower, "nondetermin") {
				out = append(out, fmt.Sprintf("%s: %s", filepath.Base(p), truncate(line, 300)))
			}
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
