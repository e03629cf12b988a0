// Package containerd runs Vigil's containers on a containerd daemon.
//
// It works with containerd 1.6 (Debian's) through current 2.x: it uses only
// the long-standing containers, tasks, images, content and snapshots
// services, never the transfer or sandbox services that 1.6 lacks.
package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/vigil-run/vigil/ctrlog"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Labels on every container Vigil creates, so `ctr -n vigil containers ls`
// and nerdctl show who owns what.
const (
	LabelDeployment = "vigil.deployment"
	LabelService    = "vigil.service"
	LabelReplica    = "vigil.replica"
	LabelIsolated   = "vigil.isolated"
	// LabelSpec is a digest of the ContainerSpec the container was created from.
	LabelSpec = "vigil.spec"
	// LabelStartedAt is when Vigil last started the container's task (RFC 3339).
	LabelStartedAt = "vigil.started-at"
	// LabelFence is the spec's Fence (a Go duration): the lease age at
	// which the container's fence ends it.
	LabelFence = "vigil.fence"
	// LabelStartError is why the last start failed; State reports it.
	LabelStartError = "vigil.start-error"
	// LabelExitReported is the exit time (RFC 3339) of the task's exit the
	// node watch delivered to the replica: a later watch skips that exit.
	LabelExitReported = "vigil.exit-reported"
)

// Defaults for Config.
const (
	DefaultAddress     = "/run/containerd/containerd.sock"
	DefaultNamespace   = "vigil"
	DefaultLogDir      = "/var/lib/vigil/logs"
	DefaultMaxLogBytes = 8 << 20
)

// Config says which containerd to use and where to keep logs.
type Config struct {
	Address   string // containerd socket (default DefaultAddress)
	Namespace string // containerd namespace (default DefaultNamespace)
	LogDir    string // per-replica log files (default DefaultLogDir)
	// MaxLogBytes bounds each replica's log file of a release before
	// v0.3.0 (containerd's own, still written by tasks started then); older
	// output is dropped first (default DefaultMaxLogBytes).
	MaxLogBytes int64
	// LogMaxSize and LogMaxFiles rotate the logs Vigil's logger keeps:
	// a file is rotated at LogMaxSize, and at most LogMaxFiles are kept
	// (defaults ctrlog.DefaultMaxSize and ctrlog.DefaultMaxFiles).
	LogMaxSize  int64
	LogMaxFiles int
	// LoggerPath is the binary containerd's shim starts as each task's
	// logger, a path on the shim's host (default: the running binary;
	// see ctrlog.InstallLogger).
	LoggerPath string
	// Snapshotter and OCIRuntime override containerd's defaults (overlayfs, io.containerd.runc.v2).
	Snapshotter string
	OCIRuntime  string
	// RuncRoot is runc's state root for this worker's tasks (default
	// runc's, /run/containerd/runc, shared by every containerd on the
	// host): a second containerd on the host, e.g. a dev or test stack,
	// needs its own, or tasks of the same namespace and name collide.
	RuncRoot string
	// DialTimeout bounds connecting to containerd (default 10 s).
	DialTimeout time.Duration
	// LogTrimInterval is how often log files of running tasks are trimmed back
	// under MaxLogBytes (default 30 s).
	LogTrimInterval time.Duration
	// StateDir keeps the node's state: named volumes, each container's
	// network and the IPAM allocations (default DefaultStateDir).
	StateDir string
	// Network is the node's bridge network for containers with network bridge.
	Network NetworkConfig
	// InitPath is the static init mounted as PID 1 for init: true (default DefaultInitPath).
	InitPath string
	// FencePath is the static vigil-fence run in the containers of specs
	// with a Fence (none without it: such a spec is refused).
	FencePath string
	// Registry says how images are pulled: credentials, CAs, stall timeout.
	Registry RegistryConfig
}

func (c *Config) setDefaults() {
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.LogDir == "" {
		c.LogDir = DefaultLogDir
	}
	if c.MaxLogBytes <= 0 {
		c.MaxLogBytes = DefaultMaxLogBytes
	}
	if c.LogMaxSize <= 0 {
		c.LogMaxSize = ctrlog.DefaultMaxSize
	}
	if c.LogMaxFiles <= 0 {
		c.LogMaxFiles = ctrlog.DefaultMaxFiles
	}
	if c.LoggerPath == "" {
		c.LoggerPath, _ = ctrlog.InstallLogger("") // no path: each start says why
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.LogTrimInterval <= 0 {
		c.LogTrimInterval = 30 * time.Second
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.InitPath == "" {
		c.InitPath = DefaultInitPath
	}
	if c.Registry.StallTimeout <= 0 {
		c.Registry.StallTimeout = DefaultPullStallTimeout
	}
}

// Runtime implements runtime.Runtime on containerd.
type Runtime struct {
	client *containerd.Client
	cfg    Config
	logDir string // cfg.LogDir/<namespace>
	net    *network
	pulls  pulls

	locks     keyedMutex
	stop      chan struct{}
	done      chan struct{}
	oomDone   chan struct{}
	closeOnce sync.Once
}

var _ runtime.Runtime = (*Runtime)(nil)

// New connects to containerd. It does not wait for the daemon: a daemon that
// is down shows up as runtime.ErrUnavailable on each call until it is back.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	cfg.setDefaults()
	if err := identifiers.Validate(cfg.Namespace); err != nil {
		return nil, fmt.Errorf("containerd namespace %q: %v; use letters, digits, '.', '_' and '-'", cfg.Namespace, err)
	}
	logDir := filepath.Join(cfg.LogDir, cfg.Namespace)
	if err := os.MkdirAll(logDir, 0o750); err != nil {
		return nil, fmt.Errorf("log dir %s: %w; set a writable log directory", logDir, err)
	}
	opts := []containerd.Opt{containerd.WithDefaultNamespace(cfg.Namespace), containerd.WithTimeout(cfg.DialTimeout)}
	if cfg.OCIRuntime != "" {
		opts = append(opts, containerd.WithDefaultRuntime(cfg.OCIRuntime))
	}
	net, err := newNetwork(cfg.Network, cfg.StateDir, cfg.Namespace)
	if err != nil {
		return nil, err
	}
	client, err := containerd.New(cfg.Address, opts...)
	if err != nil {
		return nil, wrap("connect", cfg.Address, err, nil)
	}
	r := &Runtime{client: client, cfg: cfg, logDir: logDir, net: net, stop: make(chan struct{}), done: make(chan struct{}), oomDone: make(chan struct{})}
	go r.trimLogsLoop()
	go r.recordOOMs()
	return r, nil
}

// Close stops background work and disconnects. Containers keep running.
func (r *Runtime) Close() error {
	var err error
	r.closeOnce.Do(func() {
		close(r.stop)
		<-r.done
		<-r.oomDone
		err = r.client.Close()
	})
	return err
}

// Version asks the daemon for its version, e.g. "1.6.20~ds1"; use it to check
// that containerd is reachable (runtime.ErrUnavailable when it is not).
func (r *Runtime) Version(ctx context.Context) (string, error) {
	v, err := r.client.Version(ctx)
	if err != nil {
		return "", wrap("version", r.cfg.Address, err, nil)
	}
	return v.Version, nil
}

// Client is the underlying containerd client, for tools and tests.
func (r *Runtime) Client() *containerd.Client { return r.client }

// Namespace is the containerd namespace the runtime works in.
func (r *Runtime) Namespace() string { return r.cfg.Namespace }

// LogPath is where a replica's stdout and stderr were kept before v0.3.0
// (containerd's log file; tasks started then still write it).
func (r *Runtime) LogPath(id replica.ID) string {
	return ctrlog.Legacy(r.logDir, id.ContainerName())
}

// LogDir is the directory of a replica's log files (ctrlog).
func (r *Runtime) LogDir(id replica.ID) string {
	return ctrlog.Dir(r.logDir, id.ContainerName())
}

// Log is a replica's kept output.
func (r *Runtime) Log(id replica.ID) (ctrlog.Log, error) {
	if err := validateID(id); err != nil {
		return ctrlog.Log{}, err
	}
	return ctrlog.Log{Dir: r.LogDir(id), Legacy: r.LogPath(id)}, nil
}

func validateID(id replica.ID) error {
	if id.Deployment == "" || id.Service == "" || id.Replica < 1 {
		return fmt.Errorf("container id %+v: deployment and service must be set and replica >= 1", id)
	}
	if err := identifiers.Validate(id.ContainerName()); err != nil {
		return fmt.Errorf("container id %q: %v; use letters, digits, '.', '_' and '-' in deployment and service names", id.ContainerName(), err)
	}
	return nil
}

func (r *Runtime) nsCtx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.cfg.Namespace)
}

// named validates id and returns the namespaced context and containerd name.
func (r *Runtime) named(ctx context.Context, id replica.ID) (context.Context, string, error) {
	if err := validateID(id); err != nil {
		return ctx, "", err
	}
	return r.nsCtx(ctx), id.ContainerName(), nil
}

// exclusive is named plus exclusive access to the container among this
// runtime's mutating calls, until unlock.
func (r *Runtime) exclusive(ctx context.Context, id replica.ID) (context.Context, string, func(), error) {
	ctx, name, err := r.named(ctx, id)
	if err != nil {
		return ctx, "", nil, err
	}
	return ctx, name, r.locks.lock(name), nil
}

// keyedMutex serialises changes to one container without blocking others.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	sync.Mutex
	users int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
