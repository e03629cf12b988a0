// Command simnode runs many simulated Vigil nodes in one process, for the
// scale harness (make bench-scale): each node has its own identity, claim,
// node queue and node watch, as a vigil-worker's, over an in-memory runtime
// (internal/simruntime) whose starts take containerd's measured latency.
// The process also runs the shared workflow queue's worker. Workflows, the
// Temporal server and the CLI are the real ones; only the containers are not.
//
//	simnode --nodes 100 --state-dir /tmp/sim --control 127.0.0.1:0
//
// A small HTTP API on --control (127.0.0.1 only) drives the simulation:
// GET /stats (running containers and starts per node),
// POST /crash?node=sim-001&node=sim-002 (every running container of those
// nodes crashes at once), POST /crash-rate?per_hour=0.01 (the background
// crash rate of every node) and GET /recoveries (each crash's time until
// its container ran again, since the last call).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/config"
	"github.com/vigil-run/vigil/control"
	"github.com/vigil-run/vigil/internal/nodeworker"
	"github.com/vigil-run/vigil/internal/simruntime"
	"github.com/vigil-run/vigil/lease"
	"github.com/vigil-run/vigil/logging"
	"github.com/vigil-run/vigil/runtime/runtimetest"
	"github.com/vigil-run/vigil/version"
)

type options struct {
	conn          config.Connection
	log           logging.Options
	nodes         int
	prefix        string
	stateDir      string
	control       string
	crashRate     float64
	pollers       int
	maxActivities int
	noLatency     bool
	seed          uint64
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

func parseFlags(args []string, lookup func(string) (string, bool), stderr io.Writer) (*options, error) {
	o := &options{}
	fs := pflag.NewFlagSet("simnode", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	o.conn.AddFlags(fs)
	o.log.AddFlags(fs)
	fs.IntVar(&o.nodes, "nodes", 100, "simulated nodes, named <prefix>001, <prefix>002, ...")
	fs.StringVar(&o.prefix, "prefix", "sim-", "prefix of the nodes' names")
	fs.StringVar(&o.stateDir, "state-dir", "", "directory of the nodes' identities and lease files (required)")
	fs.StringVar(&o.control, "control", "127.0.0.1:0", "serve the control API (GET /stats, POST /crash?node=N) on this 127.0.0.1 host:port; its address is printed on stdout")
	fs.Float64Var(&o.crashRate, "crash-rate", 0, "fraction of running containers that crash per hour, e.g. 0.01")
	fs.IntVar(&o.pollers, "pollers", 2, "activity task pollers per node")
	fs.IntVar(&o.maxActivities, "max-activities", 2000, "most activities run at once per node")
	fs.BoolVar(&o.noLatency, "no-start-latency", false, "starts take no time (default: containerd's measured start latency)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the simulation's draws")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, nil
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q; simnode takes only flags", fs.Arg(0))
	}
	if err := o.conn.Resolve(fs, lookup); err != nil {
		return nil, err
	}
	switch {
	case o.nodes < 1 || o.nodes > 999:
		return nil, fmt.Errorf("--nodes: %d must be between 1 and 999, e.g. 100", o.nodes)
	case o.stateDir == "":
		return nil, errors.New("--state-dir: required; give a directory for the nodes' identities, e.g. /tmp/simnode")
	case o.crashRate < 0:
		return nil, fmt.Errorf("--crash-rate: %v must be 0 or more, e.g. 0.01 (1 %% per hour)", o.crashRate)
	case o.pollers < 1:
		return nil, fmt.Errorf("--pollers: %d must be at least 1, e.g. 2", o.pollers)
	case o.maxActivities < 1:
		return nil, fmt.Errorf("--max-activities: %d must be at least 1, e.g. 2000", o.maxActivities)
	}
	if host, _, err := net.SplitHostPort(o.control); err != nil || (host != "127.0.0.1" && host != "localhost") {
		return nil, fmt.Errorf("--control %q: want 127.0.0.1:port, e.g. 127.0.0.1:0", o.control)
	}
	return o, nil
}

func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	o, err := parseFlags(args, lookup, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "simnode: %v\n", err)
		return 2
	}
	if o == nil {
		return 0
	}
	o.conn.Identity = version.Identity("simnode")
	log, err := logging.New(o.log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "simnode: %v\n", err)
		return 2
	}
	defer func() { _ = log.Sync() }()
	if err := serve(ctx, o, log, stdout); err != nil {
		log.Error("simnode stopped", zap.Error(err))
		return 1
	}
	return 0
}

// simNode is one simulated node.
type simNode struct {
	name string
	rt   *simruntime.Runtime
}

func serve(ctx context.Context, o *options, log *zap.Logger, stdout io.Writer) error {
	dialCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := o.conn.Dial(dialCtx, logging.Temporal(log))
	if err != nil {
		return err
	}
	defer c.Close()
	dc, err := o.conn.DataConverter() // read by Dial already: no error now
	if err != nil {
		return err
	}
	if err := config.EnsureSearchAttributes(dialCtx, c, o.conn.Namespace); err != nil && !errors.Is(err, config.ErrNoOperatorAccess) {
		return err
	}
	fatal := make(chan error, 1)
	onFatal := func(err error) {
		select {
		case fatal <- err:
		default:
		}
	}
	wf := nodeworker.NewWorkflowWorker(c, o.conn.TaskQueue, onFatal)
	if err := wf.Start(); err != nil {
		return fmt.Errorf("cannot start the workflow worker on task queue %s: %w", o.conn.TaskQueue, err)
	}
	defer wf.Stop()

	latency := simruntime.ContainerdStart
	if o.noLatency {
		latency = nil
	}
	nodes := make([]*simNode, o.nodes)
	host, _ := os.Hostname()
	for i := range nodes {
		name := fmt.Sprintf("%s%03d", o.prefix, i+1)
		dir := filepath.Join(o.stateDir, name)
		me, err := nodeworker.LoadIdentity(dir)
		if err != nil {
			return err
		}
		rt := simruntime.New(simruntime.Config{StartLatency: latency, CrashesPerHour: o.crashRate, Seed: o.seed + uint64(i)})
		nodes[i] = &simNode{name: name, rt: rt}
		stop, err := nodeworker.Node{
			Client: c, DataConverter: dc, Namespace: o.conn.Namespace, WorkflowQueue: o.conn.TaskQueue, Name: name, Identity: me,
			Claimant: control.Claimant{Worker: o.conn.Identity + "/" + name, Host: host + "/" + name},
			Runtime:  rt, Activities: activities.Options{Node: name, LeaseDir: lease.Dir(dir)},
			MaxActivities: o.maxActivities, Pollers: o.pollers, OnFatal: onFatal, Log: log.With(zap.String("node", name)),
		}.Start(ctx)
		if err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
		defer stop()
		go rt.Run(ctx, time.Second)
	}
	log.Info("simulated nodes claimed and polled", zap.Int("nodes", len(nodes)), zap.Float64("crash_rate_per_hour", o.crashRate))

	ln, err := net.Listen("tcp", o.control)
	if err != nil {
		return fmt.Errorf("--control: %w", err)
	}
	srv := &http.Server{Handler: controlAPI(nodes), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()
	// The bench reads this line to find the API.
	fmt.Fprintf(stdout, "control http://%s\n", ln.Addr())

	select {
	case <-ctx.Done():
		return nil
	case err := <-fatal:
		return fmt.Errorf("worker failed: %w", err)
	}
}

// NodeStats is one node's line of GET /stats.
type NodeStats struct {
	Node    string `json:"node"`
	Running int    `json:"running"`
	Starts  int    `json:"starts"`
}

// CrashResult is POST /crash's answer.
type CrashResult struct {
	Crashed int       `json:"crashed"`
	At      time.Time `json:"at"`
}

// Recoveries is GET /recoveries's answer.
type Recoveries struct {
	Millis []float64 `json:"exit_to_running_ms"`
}

func controlAPI(nodes []*simNode) http.Handler {
	byName := map[string]*simNode{}
	for _, n := range nodes {
		byName[n.name] = n
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		out := make([]NodeStats, 0, len(nodes))
		for _, n := range nodes {
			out = append(out, NodeStats{Node: n.name, Running: len(n.rt.Running()), Starts: n.rt.Calls(runtimetest.OpStart)})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("POST /crash", func(w http.ResponseWriter, r *http.Request) {
		names := r.URL.Query()["node"]
		for _, name := range names {
			if byName[name] == nil {
				http.Error(w, "node "+name+": no such simulated node", http.StatusBadRequest)
				return
			}
		}
		res := CrashResult{At: time.Now()}
		for _, name := range names {
			res.Crashed += byName[name].rt.CrashAll()
		}
		_ = json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("POST /crash-rate", func(w http.ResponseWriter, r *http.Request) {
		rate, err := strconv.ParseFloat(r.URL.Query().Get("per_hour"), 64)
		if err != nil || rate < 0 {
			http.Error(w, "per_hour: want a fraction of the containers per hour, e.g. 0.01", http.StatusBadRequest)
			return
		}
		for _, n := range nodes {
			n.rt.SetCrashRate(rate)
		}
		_ = json.NewEncoder(w).Encode(map[string]float64{"per_hour": rate})
	})
	mux.HandleFunc("GET /recoveries", func(w http.ResponseWriter, r *http.Request) {
		res := Recoveries{Millis: []float64{}}
		for _, n := range nodes {
			for _, d := range n.rt.Recoveries() {
				res.Millis = append(res.Millis, float64(d.Microseconds())/1000)
			}
		}
		_ = json.NewEncoder(w).Encode(res)
	})
	return mux
}
