package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/internal/cluster"
	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	vcontainerd "github.com/vigil-run/vigil/runtime/containerd"
	"github.com/vigil-run/vigil/workflows"
)

const benchImage = "docker.io/library/busybox:local"

// vigilBench is a whole local installation plus a view of its containerd's events.
type vigilBench struct {
	dir    string
	stack  *stack.Stack
	events *taskEvents
	tc     client.Client
	cli    string
	// cluster is set when the installation is a Temporal cluster
	// (bench --cluster) rather than the dev server; pids then names the
	// processes whose CPU the storm reports.
	cluster *cluster.Cluster
	pids    func() map[string]int
}

func temporalCLI() (string, error) {
	for _, dir := range []string{os.Getenv("VIGIL_BIN"), filepath.Join(os.Getenv("HOME"), ".cache/vigil/bin")} {
		if dir == "" {
			continue
		}
		if p := filepath.Join(dir, "temporal"); fileExists(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath("temporal"); err == nil {
		return p, nil
	}
	return "", errors.New("temporal CLI not found in $VIGIL_BIN, ~/.cache/vigil/bin or PATH; run make deps")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// startVigil builds vigil and vigil-worker from the working tree, or from
// commit (e.g. a release, to measure it with this bench side by side).
func startVigil(ctx context.Context, commit string) (*vigilBench, error) {
	if err := containerdtest.Prerequisites(); err != nil {
		return nil, err
	}
	cli, err := temporalCLI()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vb") // short: containerd's socket lives under it
	if err != nil {
		return nil, err
	}
	phase("building vigil and vigil-worker; starting containerd, the dev server and a worker in %s", dir)
	// The binaries go to their own directory: the stack keeps the worker's
	// state in <dir>/vigil.
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	vigilBin, workerBin, err := stack.Build(".", bin)
	if commit != "" {
		vigilBin, workerBin, err = stack.BuildCommit(".", commit, bin)
	}
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	st, err := stack.Start(sctx, stack.Options{Dir: dir, TemporalCLI: cli, VigilBin: vigilBin, WorkerBin: workerBin, Node: "bench", ServerMetrics: true})
	if err != nil {
		return nil, err
	}
	v := &vigilBench{dir: dir, stack: st, cli: cli}
	if err := st.StartWorker(); err != nil {
		v.Close(ctx)
		return nil, err
	}
	if v.tc, err = st.Client(); err != nil {
		v.Close(ctx)
		return nil, err
	}
	if v.events, err = subscribe(ctx, st.Containerd.Address, st.Containerd.Namespace); err != nil {
		v.Close(ctx)
		return nil, err
	}
	return v, nil
}

func (v *vigilBench) Close(ctx context.Context) {
	if v.events != nil {
		v.events.Close()
	}
	if v.tc != nil {
		v.tc.Close()
	}
	if v.cluster != nil {
		v.closeCluster(ctx)
		return
	}
	// containerdtest's shutdown gives itself 30 s to remove containers, too
	// little for hundreds: remove them first, with the worker gone.
	v.stack.KillWorker()
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Minute)
	defer rcancel()
	if err := v.removeContainers(rctx); err != nil {
		fmt.Fprintf(os.Stderr, "bench: remove containers: %v\n", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := v.stack.Close(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "bench: stop the stack: %v\n", err)
	}
	_ = os.RemoveAll(v.dir)
}

// removeContainers kills and deletes every container in the stack's namespace.
func (v *vigilBench) removeContainers(ctx context.Context) error {
	c, err := containerd.New(v.stack.Containerd.Address)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx = namespaces.WithNamespace(ctx, v.stack.Containerd.Namespace)
	cs, err := c.Containers(ctx)
	if err != nil {
		return err
	}
	return parallel(len(cs), 8, func(i int) error {
		if task, err := cs[i].Task(ctx, nil); err == nil {
			if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
		}
		if err := cs[i].Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		return nil
	})
}

func (v *vigilBench) temporalVersion() string { return firstLine(v.cli, "--version") }

func (v *vigilBench) runtime(ctx context.Context) (*vcontainerd.Runtime, error) {
	return vcontainerd.New(ctx, vcontainerd.Config{
		Address: v.stack.Containerd.Address, Namespace: v.stack.Containerd.Namespace, LogDir: filepath.Join(v.dir, "floorlogs"),
	})
}

func crashSpec(cmd string) runtime.ContainerSpec {
	return runtime.ContainerSpec{Image: benchImage, PullPolicy: runtime.PullNever, Entrypoint: []string{"/bin/sh", "-c"}, Args: []string{cmd}}
}

// floor restarts the same container without Temporal, as soon as it exits:
// once with the bare containerd client (delete the task, new task, start)
// and once through Vigil's runtime doing what EnsureRunning does (Create,
// State, Start).
func (v *vigilBench) floor(ctx context.Context, cfg config) (client, rt Dist, err error) {
	r, err := v.runtime(ctx)
	if err != nil {
		return Dist{}, Dist{}, err
	}
	defer r.Close()
	spec := crashSpec(cfg.ContainerCommand)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.FloorRestarts)*5*time.Second+time.Minute)
	defer cancel()

	// The bare client.
	rawID := replica.ID{Deployment: "floor", Service: "client", Replica: 1}
	if err := r.Create(ctx, rawID, spec); err != nil {
		return Dist{}, Dist{}, err
	}
	nctx := namespaces.WithNamespace(ctx, r.Namespace())
	c, err := r.Client().LoadContainer(nctx, rawID.ContainerName())
	if err != nil {
		return Dist{}, Dist{}, err
	}
	for i := 0; i <= cfg.FloorRestarts; i++ {
		task, err := c.NewTask(nctx, cio.NullIO)
		if err != nil {
			return Dist{}, Dist{}, err
		}
		exitc, err := task.Wait(nctx)
		if err != nil {
			return Dist{}, Dist{}, err
		}
		if err := task.Start(nctx); err != nil {
			return Dist{}, Dist{}, err
		}
		<-exitc
		if _, err := task.Delete(nctx); err != nil {
			return Dist{}, Dist{}, err
		}
	}
	raw, err := v.events.waitRestarts(ctx, rawID.ContainerName(), cfg.FloorRestarts)
	if err != nil {
		return Dist{}, Dist{}, err
	}

	// Vigil's runtime, as EnsureRunning calls it.
	id := replica.ID{Deployment: "floor", Service: "runtime", Replica: 1}
	var last time.Time
	var checks, starts []time.Duration
	for i := 0; i <= cfg.FloorRestarts; i++ {
		t0 := time.Now()
		if err := r.Create(ctx, id, spec); err != nil {
			return Dist{}, Dist{}, err
		}
		if !last.IsZero() {
			if _, err := r.State(ctx, id); err != nil {
				return Dist{}, Dist{}, err
			}
		}
		t1 := time.Now()
		if _, err := r.Start(ctx, id); err != nil {
			return Dist{}, Dist{}, err
		}
		if !last.IsZero() {
			checks, starts = append(checks, t1.Sub(t0)), append(starts, time.Since(t1))
		}
		st, err := r.Wait(ctx, id)
		if err != nil {
			return Dist{}, Dist{}, err
		}
		last = st.ExitedAt
	}
	fmt.Printf("    runtime restart steps: Create+State (no-ops here) %s; Start %s\n", dist(checks), dist(starts))
	viaRuntime, err := v.events.waitRestarts(ctx, id.ContainerName(), cfg.FloorRestarts)
	return dist(raw), dist(viaRuntime), err
}

// neverBackOff is the restart policy of the containers the bench crashes
// on purpose: restart every time, so that repeated storms and restart
// cycles measure restarts, never a crash-loop backoff.
const neverBackOff = "    errors:\n      on_panic: { action: restart, max_restarts: 1000000, restart_window: 10s, backoff: 1s, poll_interval: 5s }\n"

func crashDeployment(name, cmd string, replicas int, onPanic string) string {
	return fmt.Sprintf(`version: v1
deployment: %s
services:
  c:
    rtype: service
    image: { name: %s, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: [%q] }
    scale: { mode: fixed, replicas: %d }
    network: none   # like the Docker side (no bridge), and as measured before networks existed
%s`, name, benchImage, cmd, replicas, onPanic)
}

type vigilLatency struct {
	dist      Dist
	breakdown *Breakdown
	history   *HistoryResult
}

// restartLatency supervises one crashing container with a policy that never
// backs off and measures exit -> next start from containerd's events.
func (v *vigilBench) restartLatency(ctx context.Context, cfg config) (*vigilLatency, error) {
	yaml := crashDeployment("lat", cfg.ContainerCommand, 1, neverBackOff)
	file, err := v.stack.Deployment("lat", yaml)
	if err != nil {
		return nil, err
	}
	if err := v.stack.Supervise(file); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.Restarts)*5*time.Second+time.Minute)
	defer cancel()
	name := "lat.c-rep-1"
	lat, err := v.events.waitRestarts(ctx, name, cfg.Restarts)
	if err != nil {
		return nil, err
	}
	out := &vigilLatency{dist: dist(lat)}
	wfID := replica.ID{Deployment: "lat", Service: "c", Replica: 1}.WorkflowID()
	events, err := historyEvents(ctx, v.tc, wfID)
	if err != nil {
		return out, err
	}
	out.breakdown, out.history = analyseHistory(events, v.events, name)
	// Stop the crash loop: later phases measure an otherwise quiet system.
	if r, err := v.stack.Vigil("unsupervise", "lat/c-rep-1", "--stop"); err != nil || r.Code != 0 {
		return out, fmt.Errorf("vigil unsupervise lat/c-rep-1: %v %s%s", err, r.Stdout, r.Stderr)
	}
	return out, nil
}

// replicaSet is a set of supervised healthy containers.
type replicaSet struct {
	names []string // containerd container names
	wfIDs []string
}

// superviseHealthy supervises n more long-running containers in a new
// deployment and waits until they all run.
func (v *vigilBench) superviseHealthy(ctx context.Context, set *replicaSet, deployment string, n int) error {
	file, err := v.stack.Deployment(deployment, crashDeployment(deployment, "exec sleep 100000", n, neverBackOff))
	if err != nil {
		return err
	}
	t0 := time.Now()
	// The CLI starts the workflows one by one: give a few hundred time.
	timeout := (30*time.Second + time.Duration(n)*300*time.Millisecond).String()
	if r, err := v.stack.Vigil("supervise", "-f", file, "--timeout", timeout); err != nil || r.Code != 0 {
		return fmt.Errorf("vigil supervise -f %s: %v %s%s", file, err, lastLines([]byte(r.Stdout), 3), r.Stderr)
	}
	var names []string
	for i := 1; i <= n; i++ {
		id := replica.ID{Deployment: deployment, Service: "c", Replica: i}
		names = append(names, id.ContainerName())
		set.wfIDs = append(set.wfIDs, id.WorkflowID())
	}
	set.names = append(set.names, names...)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute+time.Duration(n)*time.Second)
	defer cancel()
	started, err := v.events.waitAllStarted(wctx, names, t0.Add(-time.Second))
	if err != nil {
		return err
	}
	var last time.Time
	for _, s := range started {
		if s.After(last) {
			last = s
		}
	}
	fmt.Printf("    %d containers of %s running %.1f s after supervise\n", n, deployment, last.Sub(t0).Seconds())
	return nil
}

// SteadyResult is the cost of supervising N healthy containers.
type SteadyResult struct {
	Containers             int     `json:"containers"`
	IntervalSeconds        float64 `json:"interval_s"`
	HistoryEvents          int     `json:"history_events_added"`
	EventsPerContainerHour float64 `json:"history_events_per_container_hour"`
	// Server is what the dev server counted meanwhile; RequestsPerContainerHour
	// is its requests (long polls aside) less the node-level requests of the
	// same interval with no container, per container-hour.
	Server                   requestCost `json:"server"`
	RequestsPerContainerHour float64     `json:"requests_per_container_hour"`
	ActionsPerContainerHour  float64     `json:"actions_per_container_hour"`
	WorkerCPUPercent         float64     `json:"worker_cpu_percent"`
	WorkerRSSMiB             float64     `json:"worker_rss_mib"`
	ServerCPUPercent         float64     `json:"dev_server_cpu_percent"`
	ServerRSSMiB             float64     `json:"dev_server_rss_mib"`
}

// steady measures N healthy containers for interval; node is the
// node-level cost measured with none (nil while measuring it).
func (v *vigilBench) steady(ctx context.Context, set *replicaSet, interval time.Duration, node *SteadyResult) (SteadyResult, error) {
	// Let the last starts settle.
	time.Sleep(5*time.Second + time.Duration(len(set.wfIDs))*20*time.Millisecond)
	before, err := historyLengths(ctx, v.tc, set.wfIDs)
	if err != nil {
		return SteadyResult{}, err
	}
	wpid, spid := v.stack.WorkerPID(), v.stack.ServerPID()
	w0, err := sampleProc(wpid)
	if err != nil {
		return SteadyResult{}, fmt.Errorf("worker process: %w", err)
	}
	s0, err := sampleProc(spid)
	if err != nil {
		return SteadyResult{}, fmt.Errorf("dev server process (pid %d): %w", spid, err)
	}
	// The server's counters are flushed about once a second: let the
	// bench's own history reads above land before the first count.
	time.Sleep(3 * time.Second)
	c0, err := scrapeServer(ctx, v.stack.MetricsURL, "default")
	if err != nil {
		return SteadyResult{}, err
	}
	t0 := time.Now()
	time.Sleep(interval)
	c1, err := scrapeServer(ctx, v.stack.MetricsURL, "default")
	if err != nil {
		return SteadyResult{}, err
	}
	elapsed := time.Since(t0)
	w1, _ := sampleProc(wpid)
	s1, _ := sampleProc(spid)
	after, err := historyLengths(ctx, v.tc, set.wfIDs)
	if err != nil {
		return SteadyResult{}, err
	}
	n := len(set.wfIDs)
	r := SteadyResult{
		Containers: n, IntervalSeconds: round1(w1.at.Sub(w0.at).Seconds()), HistoryEvents: after - before,
		Server:           diffCounts(c0, c1, elapsed),
		WorkerCPUPercent: cpuPercent(w0, w1), WorkerRSSMiB: round1(float64(w1.rssKB) / 1024),
		ServerCPUPercent: cpuPercent(s0, s1), ServerRSSMiB: round1(float64(s1.rssKB) / 1024),
	}
	if n > 0 {
		r.EventsPerContainerHour = round1(float64(r.HistoryEvents) / float64(n) / (r.IntervalSeconds / 3600))
		reqs, acts := r.Server.perHour(r.Server.Requests), r.Server.perHour(r.Server.Actions)
		if node != nil {
			reqs -= node.Server.perHour(node.Server.Requests)
			acts -= node.Server.perHour(node.Server.Actions)
		}
		// Less the node level, never below nothing: a window may count one
		// node heartbeat fewer than the node-level window's rate.
		r.RequestsPerContainerHour = round1(max(reqs, 0) / float64(n))
		r.ActionsPerContainerHour = round1(max(acts, 0) / float64(n))
	}
	fmt.Printf("    N=%d: %d history events, %.0f requests (%s), %.0f long polls, %.0f actions in %.0f s; worker %.1f%% CPU %.0f MiB, dev server %.1f%% CPU\n",
		n, r.HistoryEvents, r.Server.Requests, r.Server, r.Server.Polls, r.Server.Actions, r.IntervalSeconds,
		r.WorkerCPUPercent, r.WorkerRSSMiB, r.ServerCPUPercent)
	return r, nil
}

func (v *vigilBench) storm(ctx context.Context, set *replicaSet, n int) (*StormResult, error) {
	pids := map[string]int{"vigil-worker": v.stack.WorkerPID(), "dev server": v.stack.ServerPID(), "containerd": v.stack.Containerd.PID()}
	if v.pids != nil {
		pids = v.pids()
	}
	before := map[string]procSample{}
	for name, pid := range pids {
		before[name], _ = sampleProc(pid)
	}
	t0 := time.Now()
	res, err := storm(ctx, v.events, v.stack.Containerd.Address, v.stack.Containerd.Namespace, set.names[:n], nil)
	if err != nil {
		return res, err
	}
	res.CPUSeconds = map[string]float64{}
	for name, pid := range pids {
		after, _ := sampleProc(pid)
		res.CPUSeconds[name] = round1((after.cpu - before[name].cpu).Seconds())
	}
	fmt.Printf("    CPU seconds used meanwhile: %v\n", res.CPUSeconds)
	time.Sleep(3 * time.Second) // every EnsureRunning has completed and its watch started
	res.Breakdown, err = stormBreakdown(ctx, v.tc, v.events, set.wfIDs[:n], set.names[:n], t0)
	if err == nil {
		printBreakdown(res.Breakdown)
	}
	return res, err
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// WorkerLossResult: the worker is SIGKILLed, containers crash while no
// worker runs, a new worker starts.
type WorkerLossResult struct {
	Supervised        int     `json:"supervised"`
	Crashed           int     `json:"crashed"`
	WorkerDownSeconds float64 `json:"worker_down_s"`
	// From the new worker's start and from the crash to the last restart.
	FromWorkerStartSeconds float64 `json:"all_running_from_worker_start_s"`
	FromCrashSeconds       float64 `json:"all_running_from_crash_s"`
	PerContainer           Dist    `json:"per_container_exit_to_start"`
	// Breakdown is where the time went, per phase the median over the crashed containers.
	Breakdown *Breakdown `json:"breakdown,omitempty"`
}

func (v *vigilBench) workerLoss(ctx context.Context, set *replicaSet, crashes int, down time.Duration) (*WorkerLossResult, error) {
	time.Sleep(5 * time.Second) // every watch is back in place after the storm
	v.stack.KillWorker()
	victims := set.names[:crashes]
	tCrash := time.Now()
	if err := killTasks(ctx, v.stack.Containerd.Address, v.stack.Containerd.Namespace, victims); err != nil {
		return nil, err
	}
	time.Sleep(down)
	tWorker := time.Now()
	if err := v.stack.StartWorker(); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	started, err := v.events.waitAllStarted(wctx, victims, tCrash)
	if err != nil {
		return nil, err
	}
	last, lat := v.events.restartsSince(victims, started, tCrash)
	r := &WorkerLossResult{
		Supervised: len(set.names), Crashed: crashes, WorkerDownSeconds: round3(tWorker.Sub(tCrash).Seconds()),
		FromWorkerStartSeconds: round3(last.Sub(tWorker).Seconds()), FromCrashSeconds: round3(last.Sub(tCrash).Seconds()),
		PerContainer: dist(lat),
	}
	fmt.Printf("    worker killed, %d crashed, new worker after %.1f s: all running %.2f s after its start (%.2f s after the crash)\n",
		crashes, r.WorkerDownSeconds, r.FromWorkerStartSeconds, r.FromCrashSeconds)
	time.Sleep(3 * time.Second)
	r.Breakdown, err = stormBreakdown(ctx, v.tc, v.events, set.wfIDs[:crashes], victims, tCrash)
	if err == nil {
		printBreakdown(r.Breakdown)
	}
	return r, err
}

// scale measures the node-level cost (no container), then the steady-state
// sizes in ascending order, with the crash storm, the worker loss and the
// backoff across a worker kill on the first StormSize containers.
func (v *vigilBench) scale(ctx context.Context, cfg config, res *Results) error {
	sizes := append([]int(nil), cfg.SteadySizes...)
	sort.Ints(sizes)
	set := &replicaSet{}
	var errs []error
	// Twice the interval: the node's heartbeat comes once a minute, and a
	// window of one minute would count it 0, 1 or 2 times.
	nodeWindow := 2 * cfg.SteadyInterval
	phase("node level: no container for %s (the node watch's heartbeat, the node workflow)", nodeWindow)
	if node, err := v.steady(ctx, set, nodeWindow, nil); err != nil {
		errs = append(errs, fmt.Errorf("node level: %w", err))
	} else {
		res.Node = &node
		fmt.Printf("    node level: %.0f requests, %.0f actions per node-hour\n", node.Server.perHour(node.Server.Requests), node.Server.perHour(node.Server.Actions))
	}
	grow := func(to int) error {
		if to <= len(set.names) {
			return nil
		}
		return v.superviseHealthy(ctx, set, fmt.Sprintf("idle%d", to), to-len(set.names))
	}
	stormDone := false
	doStorm := func() {
		stormDone = true
		if err := grow(cfg.StormSize); err != nil {
			errs = append(errs, fmt.Errorf("supervise %d for the storm: %w", cfg.StormSize, err))
			return
		}
		phase("crash storm: %d containers SIGKILLed at once", cfg.StormSize)
		var err error
		res.Storm.Vigil, err = medianStorm(cfg.stormRuns(), func(i int) (*StormResult, error) {
			if i > 0 {
				time.Sleep(5 * time.Second) // the last storm's starts have settled
			}
			return v.storm(ctx, set, cfg.StormSize)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("crash storm: %w", err))
		}
		phase("worker loss: SIGKILL the worker, crash %d of %d, start a new worker", cfg.LossCrashes, len(set.names))
		if res.Loss, err = v.workerLoss(ctx, set, cfg.LossCrashes, cfg.LossWorkerDown); err != nil {
			errs = append(errs, fmt.Errorf("worker loss: %w", err))
		}
		phase("backoff across a worker kill: SIGKILL the worker during a crash-loop backoff, start a new one")
		if res.BackoffKill, err = v.backoffKill(ctx); err != nil {
			errs = append(errs, fmt.Errorf("backoff across a worker kill: %w", err))
		}
	}
	for _, n := range sizes {
		if !stormDone && n > cfg.StormSize {
			doStorm()
		}
		phase("steady state: %d healthy containers for %s", n, cfg.SteadyInterval)
		if err := grow(n); err != nil {
			errs = append(errs, fmt.Errorf("supervise %d: %w", n, err))
			break
		}
		r, err := v.steady(ctx, &replicaSet{names: set.names[:n], wfIDs: set.wfIDs[:n]}, cfg.SteadyInterval, res.Node)
		if err != nil {
			errs = append(errs, fmt.Errorf("steady %d: %w", n, err))
			continue
		}
		res.Steady = append(res.Steady, r)
	}
	if !stormDone {
		doStorm()
	}
	return errors.Join(errs...)
}

// BackoffKillResult: a crash-loop backoff during which the worker was
// SIGKILLed (and a new one started) ends how long after its deadline.
type BackoffKillResult struct {
	BackoffSeconds float64 `json:"backoff_s"`
	// Late is containerd's start of the task minus the backoff's deadline
	// (next_restart_at), one sample per repetition.
	LateSeconds []float64 `json:"late_s"`
	MaxLate     float64   `json:"max_late_s"`
}

const backoffKillRuns = 3

func (v *vigilBench) backoffKill(ctx context.Context) (*BackoffKillResult, error) {
	const backoff = 6 * time.Second
	yaml := crashDeployment("bo", "sleep 0.5; exit 1", 1,
		fmt.Sprintf("    errors:\n      on_panic: { action: restart, max_restarts: 1, restart_window: 600s, backoff: %s, poll_interval: 5s }\n", backoff))
	file, err := v.stack.Deployment("bo", yaml)
	if err != nil {
		return nil, err
	}
	if r, err := v.stack.Vigil("supervise", "-f", file); err != nil || r.Code != 0 {
		return nil, fmt.Errorf("vigil supervise -f %s: %v %s", file, err, r.Stderr)
	}
	id := replica.ID{Deployment: "bo", Service: "c", Replica: 1}
	res := &BackoffKillResult{BackoffSeconds: backoff.Seconds()}
	var lastDeadline time.Time
	for i := 0; i < backoffKillRuns; i++ {
		deadline, err := v.nextBackoff(ctx, id.WorkflowID(), lastDeadline)
		if err != nil {
			return res, err
		}
		lastDeadline = deadline
		time.Sleep(time.Second)
		v.stack.KillWorker()
		time.Sleep(time.Second)
		if err := v.stack.StartWorker(); err != nil {
			return res, err
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		started, err := v.events.waitAllStarted(wctx, []string{id.ContainerName()}, deadline.Add(-time.Second))
		cancel()
		if err != nil {
			return res, err
		}
		late := started[id.ContainerName()].Sub(deadline).Seconds()
		res.LateSeconds = append(res.LateSeconds, round3(late))
		res.MaxLate = max(res.MaxLate, round3(late))
		fmt.Printf("    backoff %d: the worker was SIGKILLed during it; the container started %.3f s after the deadline\n", i+1, late)
	}
	// Its crash loop would otherwise add restarts to the steady-state
	// windows measured after it.
	if r, err := v.stack.Vigil("unsupervise", "bo/c-rep-1", "--stop"); err != nil || r.Code != 0 {
		return res, fmt.Errorf("vigil unsupervise bo/c-rep-1: %v %s%s", err, r.Stdout, r.Stderr)
	}
	return res, nil
}

// nextBackoff waits until the replica is in a crash-loop backoff whose
// deadline is after prev, and returns the deadline.
func (v *vigilBench) nextBackoff(ctx context.Context, wid string, prev time.Time) (time.Time, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		q, err := v.tc.QueryWorkflow(ctx, wid, "", replica.QueryState)
		if err == nil {
			var st workflows.StateView
			if err := q.Get(&st); err == nil && st.State == workflows.StateCrashLoopBackOff {
				if at, ok := st.NextRestart(); ok && at.After(prev) && time.Until(at) > 3*time.Second {
					return at, nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("%s: no new crash-loop backoff within 2 minutes", wid)
}
