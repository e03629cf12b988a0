// Command vigil-worker runs Vigil's supervisor workflows and, for the node it
// runs on, the container activities against the local containerd.
//
// One process polls two task queues: the shared workflow queue (any worker
// may run any supervisor) and its own node queue (only this host can reach
// its containerd).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/config"
	"github.com/vigil-run/vigil/control"
	"github.com/vigil-run/vigil/ctrlog"
	"github.com/vigil-run/vigil/internal/nodeworker"
	"github.com/vigil-run/vigil/lease"
	"github.com/vigil-run/vigil/logging"
	"github.com/vigil-run/vigil/metrics"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/runtime/containerd"
	"github.com/vigil-run/vigil/version"
	"github.com/vigil-run/vigil/workflows"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

type options struct {
	conn                config.Connection
	log                 logging.Options
	node                string
	containerdAddress   string
	containerdNamespace string
	logDir              string
	logMaxSize          string
	logMaxFiles         int
	stateDir            string
	network             containerd.NetworkConfig
	initPath            string
	fencePath           string
	runcRoot            string
	registry            containerd.RegistryConfig
	metricsAddress      string
	logsListen          string
	logsAdvertise       string
	logsTokenFile       string
	loggerPath          string
	noActivities        bool
	showVersion         bool
	releaseNetworks     bool
	// maxActivities bounds concurrent activities on the node queue: the
	// node watch holds one for as long as it runs, starts and stops are
	// short, and a replica holds a WaitForExit only while a replacement
	// waits min_ready (or, for a run of an old release, while its container
	// runs; see workflows/versions.go).
	maxActivities int
}

// workerEnv maps this binary's own flags to their environment fallbacks.
var workerEnv = map[string]string{
	"node":                 "VIGIL_NODE",
	"containerd-address":   "CONTAINERD_ADDRESS",
	"containerd-namespace": "VIGIL_CONTAINERD_NAMESPACE",
	"log-dir":              "VIGIL_LOG_DIR",
	"log-max-size":         "VIGIL_LOG_MAX_SIZE",
	"log-max-files":        "VIGIL_LOG_MAX_FILES",
	"state-dir":            "VIGIL_STATE_DIR",
	"bridge":               "VIGIL_BRIDGE",
	"subnet":               "VIGIL_SUBNET",
	"metrics-address":      "VIGIL_METRICS_ADDRESS",
	"logs-listen":          "VIGIL_LOGS_LISTEN",
	"logs-advertise":       "VIGIL_LOGS_ADVERTISE",
	"logs-token-file":      "VIGIL_LOGS_TOKEN_FILE",
	"logger-path":          "VIGIL_LOGGER_PATH",
	"log-format":           "VIGIL_LOG_FORMAT",
	"log-level":            "VIGIL_LOG_LEVEL",
	"registry-config":      "VIGIL_REGISTRY_CONFIG",
	"registry-ca-file":     "VIGIL_REGISTRY_CA_FILE",
	"pull-stall-timeout":   "VIGIL_PULL_STALL_TIMEOUT",
	"runc-root":            "VIGIL_RUNC_ROOT",
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// parseFlags parses args with environment fallbacks. A nil error with nil
// options means --help was printed.
func parseFlags(args []string, lookup func(string) (string, bool), stderr io.Writer) (*options, error) {
	o := &options{}
	fs := pflag.NewFlagSet("vigil-worker", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	host, _ := os.Hostname()
	o.conn.AddFlags(fs)
	o.log.AddFlags(fs)
	fs.StringVar(&o.node, "node", host, "this node's name; its activity queue is vigil-node-<node> (env VIGIL_NODE)")
	fs.StringVar(&o.containerdAddress, "containerd-address", containerd.DefaultAddress, "containerd socket (env CONTAINERD_ADDRESS)")
	fs.StringVar(&o.containerdNamespace, "containerd-namespace", containerd.DefaultNamespace, "containerd namespace for Vigil's containers (env VIGIL_CONTAINERD_NAMESPACE)")
	fs.StringVar(&o.logDir, "log-dir", containerd.DefaultLogDir, "directory for containers' captured output (env VIGIL_LOG_DIR)")
	fs.StringVar(&o.logMaxSize, "log-max-size", "10MiB", "a container's log file is rotated at this size, e.g. 10MiB (env VIGIL_LOG_MAX_SIZE)")
	fs.IntVar(&o.logMaxFiles, "log-max-files", ctrlog.DefaultMaxFiles, "most log files kept per container, the current one included (env VIGIL_LOG_MAX_FILES)")
	fs.StringVar(&o.stateDir, "state-dir", containerd.DefaultStateDir, "the node's state: named volumes, container networks, IPAM and CNI caches (env VIGIL_STATE_DIR)")
	fs.StringVar(&o.network.Bridge, "bridge", containerd.DefaultBridge, "Linux bridge of containers with network: bridge (env VIGIL_BRIDGE)")
	fs.StringVar(&o.network.Subnet, "subnet", containerd.DefaultSubnet, "IPv4 subnet of the bridge's containers (env VIGIL_SUBNET)")
	fs.StringVar(&o.network.Name, "cni-network", containerd.DefaultNetworkName, "CNI network name; it tags the bridge's iptables rules")
	fs.StringSliceVar(&o.network.PluginDirs, "cni-plugin-dir", containerd.DefaultCNIPluginDirs, "directories searched for the CNI plugins (bridge, host-local, portmap, loopback)")
	fs.StringVar(&o.network.NetNSDir, "netns-dir", containerd.DefaultNetNSDir, "directory of the containers' network namespaces")
	fs.StringVar(&o.initPath, "init-path", containerd.DefaultInitPath, "static init run as PID 1 by services with init: true (Debian: tini)")
	fs.StringVar(&o.fencePath, "fence-path", defaultFencePath(), "static vigil-fence run in every movable replica's container, a path on the host")
	fs.StringVar(&o.runcRoot, "runc-root", "", "runc's state root for the tasks; default runc's own, shared by every containerd on the host: give each extra containerd (a dev or test stack) its own (env VIGIL_RUNC_ROOT)")
	fs.StringVar(&o.registry.ConfigFile, "registry-config", "", "a Docker-style config.json with the credentials of the registries images are pulled from, read at each pull (env VIGIL_REGISTRY_CONFIG)")
	fs.StringVar(&o.registry.CAFile, "registry-ca-file", "", "PEM file of CAs trusted for registries besides the system's (env VIGIL_REGISTRY_CA_FILE)")
	fs.DurationVar(&o.registry.StallTimeout, "pull-stall-timeout", containerd.DefaultPullStallTimeout, "fail a pull that receives nothing for this long with ImagePullStalled (env VIGIL_PULL_STALL_TIMEOUT)")
	fs.StringVar(&o.metricsAddress, "metrics-address", "", "serve /metrics, /healthz and /readyz on this host:port, e.g. 127.0.0.1:9464; off when empty (env VIGIL_METRICS_ADDRESS)")
	fs.StringVar(&o.logsListen, "logs-listen", "127.0.0.1:0", "serve the containers' logs (HTTPS, token) on this host:port; port 0 picks a free one (env VIGIL_LOGS_LISTEN)")
	fs.StringVar(&o.logsAdvertise, "logs-advertise", "", "host:port the node advertises for its logs, when readers reach it by another address than --logs-listen's (env VIGIL_LOGS_ADVERTISE)")
	fs.StringVar(&o.logsTokenFile, "logs-token-file", "", "the token readers of the logs must show; made if missing (default <state-dir>/logs-token; env VIGIL_LOGS_TOKEN_FILE)")
	fs.StringVar(&o.loggerPath, "logger-path", "", "copy this binary to this absolute path and have containerd's shim start it there as each container's logger; for a worker in a container, a path mounted from the host at the same place (default: this binary where it is; env VIGIL_LOGGER_PATH)")
	fs.IntVar(&o.maxActivities, "max-activities", 2000, "most activities run at once on this node (the node watch, starts, stops, the watches of replacements waiting min_ready)")
	fs.BoolVar(&o.noActivities, "no-activities", false, "run workflows only: do not connect to containerd or poll this node's queue")
	fs.BoolVar(&o.showVersion, "version", false, "print the release and commit, then exit")
	fs.BoolVar(&o.releaseNetworks, "release-networks", false, "tear down every container network recorded under --state-dir (addresses, port rules, namespaces) and the bridge, then exit; for removing a node's state once its containers are gone")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: vigil-worker [flags]\n\nRuns Vigil's supervisor workflows and this node's container activities.\n\nFlags:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, nil
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q; vigil-worker takes only flags", fs.Arg(0))
	}
	if err := config.ApplyEnv(fs, workerEnv, lookup); err != nil {
		return nil, err
	}
	if err := o.conn.Resolve(fs, lookup); err != nil {
		return nil, err
	}
	if o.maxActivities < 1 {
		return nil, fmt.Errorf("--max-activities: %d must be at least 1, e.g. 2000", o.maxActivities)
	}
	if _, err := units.RAMInBytes(o.logMaxSize); err != nil {
		return nil, fmt.Errorf("--log-max-size %q: want a size such as 10MiB or 512KiB", o.logMaxSize)
	}
	if o.logMaxFiles < 1 {
		return nil, fmt.Errorf("--log-max-files: %d must be at least 1, e.g. 5", o.logMaxFiles)
	}
	if _, _, err := net.SplitHostPort(o.logsListen); err != nil {
		return nil, fmt.Errorf("--logs-listen %q: want host:port, e.g. 127.0.0.1:0", o.logsListen)
	}
	if o.logsTokenFile == "" {
		o.logsTokenFile = filepath.Join(o.stateDir, "logs-token")
	}
	if o.metricsAddress != "" {
		if _, _, err := net.SplitHostPort(o.metricsAddress); err != nil {
			return nil, fmt.Errorf("--metrics-address %q: want host:port, e.g. 127.0.0.1:9464 (empty turns metrics off)", o.metricsAddress)
		}
	}
	if o.registry.StallTimeout <= 0 {
		return nil, fmt.Errorf("--pull-stall-timeout: %s must be positive, e.g. 60s", o.registry.StallTimeout)
	}
	if err := containerd.CheckRegistryConfig(o.registry); err != nil {
		return nil, err
	}
	if strings.TrimSpace(o.node) == "" {
		return nil, errors.New("--node: empty; give this host's name (or set VIGIL_NODE)")
	}
	return o, nil
}

func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	o, err := parseFlags(args, lookup, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "vigil-worker: %v\n", err)
		return exitUsage
	}
	if o == nil {
		return exitOK
	}
	if o.showVersion {
		fmt.Fprintln(stdout, "vigil-worker "+version.String())
		return exitOK
	}
	if o.releaseNetworks {
		if err := releaseNetworks(ctx, o); err != nil {
			fmt.Fprintf(stderr, "vigil-worker: --release-networks: %v\n", err)
			return exitFail
		}
		return exitOK
	}
	o.conn.Identity = version.Identity("vigil-worker")
	log, err := logging.New(o.log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "vigil-worker: %v\n", err)
		return exitUsage
	}
	defer func() { _ = log.Sync() }()
	if err := serve(ctx, o, log); err != nil {
		var refused *control.ClaimRefused
		if errors.As(err, &refused) {
			// One line, what the operator must know and do.
			fmt.Fprintf(stderr, "vigil-worker: %v\n", refused)
			return exitFail
		}
		log.Error("vigil-worker stopped", zap.Error(err))
		return exitFail
	}
	return exitOK
}

// newRuntime is the node's containerd runtime as the flags say.
func newRuntime(ctx context.Context, o *options) (*containerd.Runtime, error) {
	// Under the state dir, a worker that is not root can write it.
	containerd.SetCNICacheDir(filepath.Join(o.stateDir, "cni", "cache"))
	logMaxSize, _ := units.RAMInBytes(o.logMaxSize) // checked by parseFlags
	logger, err := ctrlog.InstallLogger(o.loggerPath)
	if err != nil {
		return nil, fmt.Errorf("--logger-path: %w", err)
	}
	return containerd.New(ctx, containerd.Config{
		Address:     o.containerdAddress,
		Namespace:   o.containerdNamespace,
		LogDir:      o.logDir,
		LogMaxSize:  logMaxSize,
		LogMaxFiles: o.logMaxFiles,
		LoggerPath:  logger,
		StateDir:    o.stateDir,
		Network:     o.network,
		InitPath:    o.initPath,
		FencePath:   o.fencePath,
		RuncRoot:    o.runcRoot,
		Registry:    o.registry,
	})
}

// defaultFencePath is vigil-fence beside this executable, as `make build`
// and the image put it.
func defaultFencePath() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return filepath.Join(filepath.Dir(exe), "vigil-fence")
}

// releaseNetworks is --release-networks.
func releaseNetworks(ctx context.Context, o *options) error {
	rt, err := newRuntime(ctx, o)
	if err != nil {
		return err
	}
	defer rt.Close()
	return rt.ReleaseNetworks(ctx)
}

// serve connects, registers, polls until ctx is done, then stops gracefully.
func serve(ctx context.Context, o *options, log *zap.Logger) error {
	log.Info("starting vigil-worker", zap.String("release", version.Release), zap.String("commit", version.Commit()),
		zap.String("identity", o.conn.Identity), zap.String("connection", o.conn.String()), zap.String("node", o.node),
		zap.Bool("activities", !o.noActivities))
	if !o.noActivities && !containerd.AppArmorSupported() {
		log.Warn("AppArmor is off on this node (or apparmor_parser is missing): the apparmor setting of security blocks is ignored here")
	}

	// /healthz answers from the start; /readyz once both queues are polled
	// and containerd answers.
	var m *metrics.Metrics
	wfQueue, nodeQueue := o.conn.TaskQueue, replica.NodeTaskQueue(o.node)
	conditions := []string{"workflow task queue " + wfQueue + " polled"}
	if !o.noActivities {
		conditions = append(conditions, "node task queue "+nodeQueue+" polled")
	}
	ready := metrics.NewReadiness(conditions...)
	if o.metricsAddress != "" {
		m = metrics.New()
		handler, closeHandler, err := m.Handler()
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		defer closeHandler()
		o.conn.MetricsHandler = handler
		srv, err := metrics.Listen(o.metricsAddress, m, ready)
		if err != nil {
			return err
		}
		defer func() { _ = srv.Close(context.Background()) }()
		log.Info("serving metrics", zap.String("address", srv.Addr()))
	}

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
	ready.AddCheck("Temporal at "+o.conn.Address, func(ctx context.Context) error {
		_, err := c.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	})
	if err := config.EnsureSearchAttributes(dialCtx, c, o.conn.Namespace); errors.Is(err, config.ErrNoOperatorAccess) {
		// Typical of Temporal Cloud API keys: the attributes may well exist.
		log.Warn("search attributes not checked; make sure they exist", zap.Error(err))
	} else if err != nil {
		return err
	}

	fatal := make(chan error, 2)
	onFatal := func(err error) {
		select {
		case fatal <- err:
		default:
		}
	}
	// cleanup runs in reverse order of setup: the activity worker stops
	// before the containerd connection it uses is closed.
	var cleanup []func()
	defer func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
		log.Info("vigil-worker stopped")
	}()

	wf := nodeworker.NewWorkflowWorker(c, o.conn.TaskQueue, onFatal)
	if err := wf.Start(); err != nil {
		return fmt.Errorf("cannot start the workflow worker on task queue %s: %w", o.conn.TaskQueue, err)
	}
	cleanup = append(cleanup, wf.Stop)
	ready.Set(conditions[0])

	if !o.noActivities {
		rt, err := newRuntime(ctx, o)
		if err != nil {
			return fmt.Errorf("containerd at %s: %w", o.containerdAddress, err)
		}
		cleanup = append(cleanup, func() { _ = rt.Close() })
		ready.AddCheck("containerd at "+o.containerdAddress, func(ctx context.Context) error {
			_, err := rt.Version(ctx)
			return err
		})
		var actRT runtime.Runtime = rt
		me, err := nodeworker.LoadIdentity(o.stateDir)
		if err != nil {
			return err
		}
		host, _ := os.Hostname()
		logs, err := serveLogs(o, rt)
		if err != nil {
			return err
		}
		cleanup = append(cleanup, func() { _ = logs.Close() })
		endpoint := &workflows.LogsEndpoint{Address: ctrlog.Advertised(o.logsAdvertise, logs.Addr()), CertSHA256: logs.Fingerprint()}
		log.Info("serving the containers' logs", zap.String("address", logs.Addr()), zap.String("advertised", endpoint.Address), zap.String("token_file", o.logsTokenFile))
		actOpts := activities.Options{Probes: rt, LeaseDir: lease.Dir(o.stateDir)}
		if m != nil {
			actRT = m.Instrument(rt)
			actOpts.Watched = m.Watched()
		}
		stopNode, err := nodeworker.Node{
			Client: c, DataConverter: dc, Namespace: o.conn.Namespace, WorkflowQueue: o.conn.TaskQueue, Name: o.node, Identity: me,
			Claimant: control.Claimant{Worker: o.conn.Identity, Host: host, Logs: endpoint},
			Runtime:  actRT, Activities: actOpts, MaxActivities: o.maxActivities, OnFatal: onFatal, Log: log,
		}.Start(ctx)
		if err != nil {
			return err
		}
		cleanup = append(cleanup, stopNode)
		ready.Set(conditions[1])
		log.Info("polling", zap.String("workflow_task_queue", o.conn.TaskQueue), zap.String("activity_task_queue", nodeQueue))
	} else {
		log.Info("polling", zap.String("workflow_task_queue", o.conn.TaskQueue))
	}

	select {
	case <-ctx.Done():
		log.Info("signal received; stopping")
		return nil
	case err := <-fatal:
		return fmt.Errorf("worker failed: %w", err)
	}
}

// serveLogs serves the node's container logs to readers with the token;
// the node's claim advertises where (never the token).
func serveLogs(o *options, rt *containerd.Runtime) (*ctrlog.Server, error) {
	token, err := ctrlog.LoadOrCreateToken(o.logsTokenFile)
	if err != nil {
		return nil, err
	}
	return ctrlog.Serve(o.logsListen, token, func(ref string) (ctrlog.Log, error) {
		id, err := replica.ParseRef(ref)
		if err != nil {
			return ctrlog.Log{}, err
		}
		return rt.Log(id)
	})
}
