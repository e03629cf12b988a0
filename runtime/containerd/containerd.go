// Package containerd runs Vigil's containers on a containerd daemon.
//
// It works with containerd 1.6 (Debian's) through current 2.x: it uses only
// the long-standing containers, tasks, images, content and snapshots
// services, never the transfer or sandbox services that 1.6 lacks.
package containerd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/distribution/reference"

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
	// LabelStartError is why the last start failed; State reports it.
	LabelStartError = "vigil.start-error"
)

// Defaults for Config.
const (
	DefaultAddress     = "/run/containerd/containerd.sock"
	DefaultNamespace   = "vigil"
	DefaultLogDir      = "/var/lib/vigil/logs"
	DefaultMaxLogBytes = 8 << 20
	DefaultStopGrace   = 10 * time.Second
)

// Config says which containerd to use and where to keep logs.
type Config struct {
	Address   string // containerd socket (default DefaultAddress)
	Namespace string // containerd namespace (default DefaultNamespace)
	LogDir    string // per-replica log files (default DefaultLogDir)
	// MaxLogBytes bounds each replica's log file; older output is dropped
	// first (default DefaultMaxLogBytes).
	MaxLogBytes int64
	// Snapshotter and OCIRuntime override containerd's defaults (overlayfs, io.containerd.runc.v2).
	Snapshotter string
	OCIRuntime  string
	// DialTimeout bounds connecting to containerd (default 10 s).
	DialTimeout time.Duration
	// LogTrimInterval is how often log files of running tasks are trimmed back
	// under MaxLogBytes (default 30 s).
	LogTrimInterval time.Duration
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
	if c.DialTimeout <= 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.LogTrimInterval <= 0 {
		c.LogTrimInterval = 30 * time.Second
	}
}

// Runtime implements runtime.Runtime on containerd.
type Runtime struct {
	client *containerd.Client
	cfg    Config
	logDir string // cfg.LogDir/<namespace>

	locks     keyedMutex
	stop      chan struct{}
	done      chan struct{}
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
	client, err := containerd.New(cfg.Address, opts...)
	if err != nil {
		return nil, wrap("connect", cfg.Address, err, nil)
	}
	r := &Runtime{client: client, cfg: cfg, logDir: logDir, stop: make(chan struct{}), done: make(chan struct{})}
	go r.trimLogsLoop()
	return r, nil
}

// Close stops background work and disconnects. Containers keep running.
func (r *Runtime) Close() error {
	var err error
	r.closeOnce.Do(func() {
		close(r.stop)
		<-r.done
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

// ContainerName is the containerd container ID of a replica: "<deployment>.<service>-rep-<replica>".
func ContainerName(id runtime.ContainerID) string {
	return id.Deployment + "." + id.String()
}

// LogPath is where a replica's stdout and stderr are kept.
func (r *Runtime) LogPath(id runtime.ContainerID) string {
	return filepath.Join(r.logDir, ContainerName(id)+".log")
}

func validateID(id runtime.ContainerID) error {
	if id.Deployment == "" || id.Service == "" || id.Replica < 1 {
		return fmt.Errorf("container id %+v: deployment and service must be set and replica >= 1", id)
	}
	if err := identifiers.Validate(ContainerName(id)); err != nil {
		return fmt.Errorf("container id %q: %v; use letters, digits, '.', '_' and '-' in deployment and service names", ContainerName(id), err)
	}
	return nil
}

func (r *Runtime) nsCtx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.cfg.Namespace)
}

// named validates id and returns the namespaced context and containerd name.
func (r *Runtime) named(ctx context.Context, id runtime.ContainerID) (context.Context, string, error) {
	if err := validateID(id); err != nil {
		return ctx, "", err
	}
	return r.nsCtx(ctx), ContainerName(id), nil
}

// exclusive is named plus exclusive access to the container among this
// runtime's mutating calls, until unlock.
func (r *Runtime) exclusive(ctx context.Context, id runtime.ContainerID) (context.Context, string, func(), error) {
	ctx, name, err := r.named(ctx, id)
	if err != nil {
		return ctx, "", nil, err
	}
	return ctx, name, r.locks.lock(name), nil
}

// Create creates the container unless it exists with the same spec. A
// container whose spec changed is replaced, unless its task is running (the
// new spec then applies after the container is removed).
func (r *Runtime) Create(ctx context.Context, id runtime.ContainerID, spec runtime.ContainerSpec) error {
	ctx, name, unlock, err := r.exclusive(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	digest := specDigest(spec)

	existing, err := r.client.LoadContainer(ctx, name)
	switch {
	case err == nil:
		labels, err := existing.Labels(ctx)
		if err != nil {
			return wrap("create", name, err, runtime.ErrContainerNotFound)
		}
		if labels[LabelSpec] == digest && !r.vanished(ctx, existing) {
			return nil
		}
		if st, err := r.taskState(ctx, existing); err == nil && !st.Done() {
			return nil
		}
	case errdefs.IsNotFound(err):
		existing = nil
	default:
		return wrap("create", name, err, nil)
	}

	image, err := r.ensureImage(ctx, spec)
	if err != nil {
		return err // before deleting anything: a bad new image keeps the old container
	}
	if existing != nil {
		if err := r.deleteContainer(ctx, existing); err != nil {
			return wrap("create", name, err, nil)
		}
	}
	// A snapshot left by a create that failed half-way would block the new one.
	if err := r.client.SnapshotService(r.cfg.Snapshotter).Remove(ctx, name); err != nil && !errdefs.IsNotFound(err) {
		return wrap("create", name, err, nil)
	}
	labels := map[string]string{
		LabelDeployment: id.Deployment,
		LabelService:    id.Service,
		LabelReplica:    strconv.Itoa(id.Replica),
		LabelSpec:       digest,
	}
	opts := []containerd.NewContainerOpts{containerd.WithImage(image)}
	if r.cfg.Snapshotter != "" {
		opts = append(opts, containerd.WithSnapshotter(r.cfg.Snapshotter))
	}
	opts = append(opts,
		containerd.WithNewSnapshot(name, image),
		containerd.WithContainerLabels(labels),
		containerd.WithImageStopSignal(image, "SIGTERM"), // after the labels, which it adds to
		containerd.WithNewSpec(specOpts(image, spec, name)...),
	)
	if _, err := r.client.NewContainer(ctx, name, opts...); err != nil && !errdefs.IsAlreadyExists(err) {
		return wrap("create", name, err, nil)
	}
	return nil
}

// specOpts build an unprivileged OCI spec with no host mounts: the image's
// config, overridden by the spec's command, workdir and env.
func specOpts(image containerd.Image, spec runtime.ContainerSpec, hostname string) []oci.SpecOpts {
	opts := []oci.SpecOpts{oci.WithImageConfig(image)}
	switch {
	case len(spec.Entrypoint) > 0:
		// As in Docker: a new entrypoint drops the image's CMD.
		opts = append(opts, oci.WithProcessArgs(append(append([]string{}, spec.Entrypoint...), spec.Args...)...))
	case len(spec.Args) > 0:
		opts = append(opts, oci.WithImageConfigArgs(image, spec.Args))
	}
	if spec.WorkDir != "" {
		opts = append(opts, oci.WithProcessCwd(spec.WorkDir))
	}
	if len(spec.Env) > 0 {
		keys := make([]string, 0, len(spec.Env))
		for k := range spec.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		env := make([]string, 0, len(keys))
		for _, k := range keys {
			env = append(env, k+"="+spec.Env[k])
		}
		opts = append(opts, oci.WithEnv(env))
	}
	return append(opts, oci.WithHostname(hostname), oci.WithNoNewPrivileges)
}

// specDigest identifies a spec without revealing it (env may hold resolved secrets).
func specDigest(spec runtime.ContainerSpec) string {
	b, _ := json.Marshal(spec)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// NormalizeImage turns "busybox" into "docker.io/library/busybox:latest".
func NormalizeImage(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("image %q: %v; use a reference like docker.io/library/busybox:1.36", ref, err)
	}
	return named.String(), nil
}

// ensureImage finds or pulls the image per the pull policy and makes sure it
// is unpacked into the snapshotter.
func (r *Runtime) ensureImage(ctx context.Context, spec runtime.ContainerSpec) (containerd.Image, error) {
	ref, err := NormalizeImage(spec.Image)
	if err != nil {
		return nil, &Error{Op: "image", ID: spec.Image, Kind: runtime.ErrImageNotFound, Err: err}
	}
	var image containerd.Image
	switch spec.PullPolicy {
	case runtime.PullNever, runtime.PullIfNotPresent, "":
		image, err = r.client.GetImage(ctx, ref)
		if err == nil || !errdefs.IsNotFound(err) {
			break
		}
		if spec.PullPolicy == runtime.PullNever {
			return nil, &Error{Op: "image", ID: ref, Kind: runtime.ErrImageNotFound,
				Err: fmt.Errorf("not in containerd namespace %q and pull_policy is never; import it (ctr -n %s images import FILE) or allow pulling", r.cfg.Namespace, r.cfg.Namespace)}
		}
		image, err = r.pull(ctx, ref)
	case runtime.PullAlways:
		image, err = r.pull(ctx, ref)
	default:
		return nil, &Error{Op: "image", ID: ref, Kind: runtime.ErrImageNotFound,
			Err: fmt.Errorf("pull_policy %q: use always, if_not_present or never", spec.PullPolicy)}
	}
	if err != nil {
		return nil, wrap("image", ref, err, runtime.ErrImageNotFound)
	}
	unpacked, err := image.IsUnpacked(ctx, r.cfg.Snapshotter)
	if err != nil {
		return nil, wrap("unpack", ref, err, runtime.ErrImageNotFound)
	}
	if !unpacked {
		if err := image.Unpack(ctx, r.cfg.Snapshotter); err != nil {
			return nil, wrap("unpack", ref, err, runtime.ErrImageNotFound)
		}
	}
	return image, nil
}

func (r *Runtime) pull(ctx context.Context, ref string) (containerd.Image, error) {
	opts := []containerd.RemoteOpt{containerd.WithPullUnpack}
	if r.cfg.Snapshotter != "" {
		opts = append(opts, containerd.WithPullSnapshotter(r.cfg.Snapshotter))
	}
	return r.client.Pull(ctx, ref, opts...)
}

// ImportImage imports an OCI image layout or docker-archive tar (as written
// by `docker save`, `ctr images export` or tools/mkimage), unpacks it, and
// returns the names of the imported images.
func (r *Runtime) ImportImage(ctx context.Context, tar io.Reader) ([]string, error) {
	ctx = r.nsCtx(ctx)
	imgs, err := r.client.Import(ctx, tar, containerd.WithImageRefTranslator(func(name string) string {
		full, err := NormalizeImage(name)
		if err != nil {
			return ""
		}
		return full
	}))
	if err != nil {
		return nil, wrap("import", "image", err, nil)
	}
	var names []string
	for _, img := range imgs {
		image := containerd.NewImage(r.client, img)
		if err := image.Unpack(ctx, r.cfg.Snapshotter); err != nil {
			return nil, wrap("unpack", img.Name, err, nil)
		}
		names = append(names, img.Name)
	}
	return names, nil
}

// HasImage reports whether the image is present in the runtime's namespace.
func (r *Runtime) HasImage(ctx context.Context, ref string) (bool, error) {
	full, err := NormalizeImage(ref)
	if err != nil {
		return false, err
	}
	_, err = r.client.ImageService().Get(r.nsCtx(ctx), full)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, wrap("image", full, err, nil)
}

// Start makes the task run: a running task is left alone, an exited one is
// deleted and a new one started with output appended to the replica's log.
func (r *Runtime) Start(ctx context.Context, id runtime.ContainerID) (runtime.StartInfo, error) {
	ctx, name, unlock, err := r.exclusive(ctx, id)
	if err != nil {
		return runtime.StartInfo{}, err
	}
	defer unlock()

	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return runtime.StartInfo{}, wrap("start", name, err, runtime.ErrContainerNotFound)
	}
	task, err := c.Task(ctx, nil)
	switch {
	case err == nil:
		st, err := task.Status(ctx)
		if err != nil {
			return runtime.StartInfo{}, wrap("start", name, err, nil)
		}
		switch st.Status {
		case containerd.Running, containerd.Paused, containerd.Pausing:
			labels, _ := c.Labels(ctx)
			started, _ := time.Parse(time.RFC3339Nano, labels[LabelStartedAt])
			return runtime.StartInfo{AlreadyRunning: true, StartedAt: started, PID: task.Pid()}, nil
		}
		// Stopped, or created by a start that failed half-way: begin afresh.
		if err := deleteTask(ctx, task, st.Status); err != nil {
			return runtime.StartInfo{}, wrap("start", name, err, nil)
		}
	case !errdefs.IsNotFound(err):
		return runtime.StartInfo{}, wrap("start", name, err, nil)
	}

	logPath := r.LogPath(id)
	// The worker creates the log itself: the shim (root) then appends to it,
	// and a worker that does not run as root can still trim and read it.
	// Both are best effort: a log must never keep a container down.
	if f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640); err == nil {
		_ = f.Close()
	}
	_ = trimLog(logPath, r.cfg.MaxLogBytes)
	task, err = c.NewTask(ctx, cio.LogFile(logPath))
	if errdefs.IsAlreadyExists(err) {
		// A task containerd no longer reports (Task says not found) still
		// blocks the new one: containerd 1.6 keeps it when the client that
		// deleted it died half-way (a killed worker), across restarts too.
		// The task service still finds it by ID: delete it and try again.
		if derr := deleteStaleTask(ctx, r.client, name); derr == nil {
			task, err = c.NewTask(ctx, cio.LogFile(logPath))
		}
		if errdefs.IsAlreadyExists(err) {
			// Not the container's fault: retry later rather than report a crash.
			return runtime.StartInfo{}, &Error{Op: "start", ID: name, Kind: runtime.ErrUnavailable, Err: err}
		}
	}
	if err == nil {
		// Leave no half-made task behind; the next Start begins afresh anyway.
		// But when containerd went away during the call the task may well have
		// started: the next Start finds it running instead of killing a started
		// container (found by the chaos soak, seed 3: one crash, two starts).
		if err = task.Start(ctx); err != nil && !isUnavailable(err) {
			_, _ = task.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
		}
	}
	if err != nil && strings.Contains(err.Error(), "failed to start shim") {
		// containerd could not start the task's shim, e.g. over the bundle of
		// an earlier task it left behind when it crashed (found by the chaos
		// soak, seed 4): a problem of the node, not of the container. Retried
		// with backoff, the reason shown in status, rather than counted as a
		// crash and restarted at once, over and over.
		return runtime.StartInfo{}, &Error{Op: "start", ID: name, Kind: runtime.ErrUnavailable, Err: err}
	}
	if err != nil && !isUnavailable(err) && !errdefs.IsNotFound(err) && r.vanished(ctx, c) {
		// Deleted behind Vigil's back while starting (its snapshot goes first):
		// not the container's fault; the next attempt creates it again.
		return runtime.StartInfo{}, &Error{Op: "start", ID: name, Kind: runtime.ErrContainerNotFound, Err: err}
	}
	if err != nil {
		if !isUnavailable(err) && !errdefs.IsNotFound(err) {
			// The container cannot run as specified (e.g. no such executable):
			// keep the reason where State and `ctr containers info` show it.
			_, _ = c.SetLabels(ctx, map[string]string{LabelStartError: truncate(err.Error(), 1024)})
		}
		return runtime.StartInfo{}, wrap("start", name, err, runtime.ErrContainerNotFound)
	}
	startedAt := time.Now().UTC()
	if _, err := c.SetLabels(ctx, map[string]string{LabelStartedAt: startedAt.Format(time.RFC3339Nano), LabelStartError: ""}); err != nil {
		return runtime.StartInfo{}, wrap("start", name, err, nil)
	}
	return runtime.StartInfo{StartedAt: startedAt, PID: task.Pid()}, nil
}

// vanished reports whether the container or its snapshot is gone.
func (r *Runtime) vanished(ctx context.Context, c containerd.Container) bool {
	info, err := c.Info(ctx)
	if errdefs.IsNotFound(err) {
		return true
	}
	if err != nil || info.SnapshotKey == "" {
		return false
	}
	_, err = r.client.SnapshotService(info.Snapshotter).Stat(ctx, info.SnapshotKey)
	return errdefs.IsNotFound(err)
}

// deleteStaleTask deletes a container's task through the task service,
// which finds tasks the client's Container.Task no longer does.
func deleteStaleTask(ctx context.Context, client *containerd.Client, name string) error {
	_, err := client.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: name})
	return ignoreNotFound(errgrpc.ToNative(err))
}

// State reports the container's state from containerd's own records.
// A container without a task (never started, task deleted, or the host
// rebooted) is Failed: nothing of it is running.
func (r *Runtime) State(ctx context.Context, id runtime.ContainerID) (runtime.ContainerState, error) {
	ctx, name, err := r.named(ctx, id)
	if err != nil {
		return runtime.ContainerState{}, err
	}
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return runtime.ContainerState{}, wrap("state", name, err, runtime.ErrContainerNotFound)
	}
	st, err := r.taskState(ctx, c)
	return st, wrap("state", name, err, runtime.ErrContainerNotFound)
}

const noTaskReason = "container has no task (never started, task deleted, or the host restarted)"

// noTask is the state of a container without a task: Failed, with the reason
// its last start failed when there is one.
func noTask(ctx context.Context, c containerd.Container) runtime.ContainerState {
	if labels, err := c.Labels(ctx); err == nil && labels[LabelStartError] != "" {
		return runtime.Failed("task failed to start: " + labels[LabelStartError])
	}
	return runtime.Failed(noTaskReason)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func (r *Runtime) taskState(ctx context.Context, c containerd.Container) (runtime.ContainerState, error) {
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return noTask(ctx, c), nil
	}
	if err != nil {
		return runtime.ContainerState{}, err
	}
	st, err := task.Status(ctx)
	if errdefs.IsNotFound(err) {
		return noTask(ctx, c), nil
	}
	if err != nil {
		return runtime.ContainerState{}, err
	}
	switch st.Status {
	case containerd.Running, containerd.Paused, containerd.Pausing:
		return runtime.Running(), nil
	case containerd.Created:
		return runtime.ContainerState{Status: runtime.StatusInitializing}, nil
	case containerd.Stopped:
		return runtime.Exited(int(st.ExitStatus), st.ExitTime), nil
	default:
		return runtime.ContainerState{}, fmt.Errorf("task status %q: %w", st.Status, runtime.ErrUnavailable)
	}
}

// Wait blocks until the current task is no longer running. It rides out
// containerd restarts: the task lives on in its shim, so Wait reconnects and
// keeps waiting rather than inventing an exit. It returns an error only for
// a missing container or when ctx ends.
func (r *Runtime) Wait(ctx context.Context, id runtime.ContainerID) (runtime.ContainerState, error) {
	ctx, name, err := r.named(ctx, id)
	if err != nil {
		return runtime.ContainerState{}, err
	}
	backoff := 200 * time.Millisecond
	for {
		// Any failure other than a missing container is looked at again: the
		// daemon may be restarting, or the shim died and the next look finds
		// the task gone (Failed) rather than an invented exit.
		st, err := r.waitOnce(ctx, name)
		if err == nil || errors.Is(err, runtime.ErrContainerNotFound) || ctx.Err() != nil {
			return st, err
		}
		select {
		case <-ctx.Done():
			return runtime.ContainerState{}, wrap("wait", name, ctx.Err(), nil)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 3*time.Second)
	}
}

func (r *Runtime) waitOnce(ctx context.Context, name string) (runtime.ContainerState, error) {
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return runtime.ContainerState{}, wrap("wait", name, err, runtime.ErrContainerNotFound)
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return noTask(ctx, c), nil
	}
	if err != nil {
		return runtime.ContainerState{}, wrap("wait", name, err, nil)
	}
	// Wait answers at once for a task that already exited.
	exitc, err := task.Wait(ctx)
	if errdefs.IsNotFound(err) {
		return noTask(ctx, c), nil
	}
	if err != nil {
		return runtime.ContainerState{}, wrap("wait", name, err, nil)
	}
	select {
	case es := <-exitc:
		if err := es.Error(); err != nil {
			if ctx.Err() != nil {
				return runtime.ContainerState{}, wrap("wait", name, ctx.Err(), nil)
			}
			if errdefs.IsNotFound(err) {
				return noTask(ctx, c), nil
			}
			return runtime.ContainerState{}, wrap("wait", name, err, nil)
		}
		return runtime.Exited(int(es.ExitCode()), es.ExitTime()), nil
	case <-ctx.Done():
		return runtime.ContainerState{}, wrap("wait", name, ctx.Err(), nil)
	}
}

// Stop sends SIGTERM (or the image's STOPSIGNAL), then SIGKILL to every
// process of the task after grace.
func (r *Runtime) Stop(ctx context.Context, id runtime.ContainerID, grace time.Duration) error {
	ctx, name, unlock, err := r.exclusive(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return wrap("stop", name, err, runtime.ErrContainerNotFound)
	}
	return wrap("stop", name, r.stopTask(ctx, c, grace), nil)
}

func (r *Runtime) stopTask(ctx context.Context, c containerd.Container, grace time.Duration) error {
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	st, err := task.Status(ctx)
	if err != nil {
		return ignoreNotFound(err)
	}
	if st.Status == containerd.Stopped {
		return nil
	}
	exitc, err := task.Wait(ctx)
	if err != nil {
		return ignoreNotFound(err)
	}
	if st.Status == containerd.Created {
		// Never started: nothing to terminate gracefully.
		grace = 0
	}
	if grace > 0 {
		// The image's STOPSIGNAL if it has one (e.g. SIGQUIT for nginx), else SIGTERM.
		sig, err := containerd.GetStopSignal(ctx, c, syscall.SIGTERM)
		if err != nil {
			return err
		}
		if err := task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-exitc:
			return nil
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	select {
	case <-exitc:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Remove kills and deletes the task, the container, its snapshot and its log.
func (r *Runtime) Remove(ctx context.Context, id runtime.ContainerID) error {
	ctx, name, unlock, err := r.exclusive(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	c, err := r.client.LoadContainer(ctx, name)
	if errdefs.IsNotFound(err) {
		return removeFile(r.LogPath(id))
	}
	if err != nil {
		return wrap("remove", name, err, nil)
	}
	if err := r.deleteContainer(ctx, c); err != nil {
		return wrap("remove", name, err, nil)
	}
	return removeFile(r.LogPath(id))
}

func (r *Runtime) deleteContainer(ctx context.Context, c containerd.Container) error {
	if task, err := c.Task(ctx, nil); err == nil {
		st, err := task.Status(ctx)
		if err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		if err := deleteTask(ctx, task, st.Status); err != nil {
			return err
		}
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	return ignoreNotFound(c.Delete(ctx, containerd.WithSnapshotCleanup))
}

// deleteTask deletes a task, killing it first unless it has stopped: a kill
// of a stopped task costs the 1.6 shim about a second, most of a restart.
func deleteTask(ctx context.Context, task containerd.Task, status containerd.ProcessStatus) error {
	var opts []containerd.ProcessDeleteOpts
	if status != containerd.Stopped {
		opts = append(opts, containerd.WithProcessKill)
	}
	_, err := task.Delete(ctx, opts...)
	return ignoreNotFound(err)
}

// Isolate labels the container vigil.isolated=true. Its exited task and its
// log stay in place for debugging.
func (r *Runtime) Isolate(ctx context.Context, id runtime.ContainerID) error {
	ctx, name, err := r.named(ctx, id)
	if err != nil {
		return err
	}
	c, err := r.client.LoadContainer(ctx, name)
	if err != nil {
		return wrap("isolate", name, err, runtime.ErrContainerNotFound)
	}
	_, err = c.SetLabels(ctx, map[string]string{LabelIsolated: "true"})
	return wrap("isolate", name, err, runtime.ErrContainerNotFound)
}

// Logs returns the last tail lines of the replica's log (all if tail <= 0).
func (r *Runtime) Logs(ctx context.Context, id runtime.ContainerID, tail int) ([]byte, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	_ = trimLog(r.LogPath(id), r.cfg.MaxLogBytes) // best effort; tailFile reads at most MaxLogBytes anyway
	out, err := tailFile(r.LogPath(id), tail, r.cfg.MaxLogBytes)
	if errors.Is(err, os.ErrNotExist) {
		// No output yet is not an error; an unknown container is.
		if _, err := r.client.LoadContainer(r.nsCtx(ctx), ContainerName(id)); err != nil {
			return nil, wrap("logs", ContainerName(id), err, runtime.ErrContainerNotFound)
		}
		return nil, nil
	}
	return out, err
}

// trimLogsLoop keeps the logs of long-running, chatty tasks bounded; Start
// trims the log of each new task.
func (r *Runtime) trimLogsLoop() {
	defer close(r.done)
	ticker := time.NewTicker(r.cfg.LogTrimInterval)
	defer ticker.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-ticker.C:
			paths, _ := filepath.Glob(filepath.Join(r.logDir, "*.log"))
			for _, p := range paths {
				_ = trimLog(p, r.cfg.MaxLogBytes)
			}
		}
	}
}

func ignoreNotFound(err error) error {
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
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
