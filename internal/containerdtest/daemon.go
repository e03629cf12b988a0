// Package containerdtest runs a private containerd (its own root, state,
// socket and config under one directory) for integration tests, end-to-end
// tests, benchmarks and `make run`, and imports the local busybox test image.
//
// Containers of different private daemons share runc's state directory
// (/run/containerd/runc/<namespace>) and cgroup paths (/<namespace>/<id>),
// so each daemon gets its own namespace by default: use Daemon.Namespace.
package containerdtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"github.com/vigil-run/vigil/internal/testimage"
	vcontainerd "github.com/vigil-run/vigil/runtime/containerd"
)

// Options tune StartDaemon. The zero value is usable.
type Options struct {
	// Namespace the test image is imported into (default: a fresh "vt-<random>").
	Namespace string
	// NoImage skips importing the busybox test image.
	NoImage bool
	// Detach lets the daemon outlive the calling process (for `make run`):
	// it gets its own session and is not killed when the caller dies.
	Detach bool
	// Binary is the containerd executable (default: "containerd" on PATH).
	Binary string
}

// Daemon is a running private containerd.
type Daemon struct {
	Dir       string // everything lives here
	Address   string // gRPC socket
	Namespace string // namespace holding the test image
	LogPath   string // containerd's own output
	Config    string // generated config.toml

	opts Options
	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{}
}

// StartDaemon starts containerd with everything under dir (created if
// missing; keep it short, unix sockets allow ~108 bytes), waits until it
// serves, and imports the test image unless opts.NoImage.
func StartDaemon(ctx context.Context, dir string, opts Options) (*Daemon, error) {
	if opts.Binary == "" {
		opts.Binary = "containerd"
	}
	if opts.Namespace == "" {
		opts.Namespace = "vt-" + randomHex(4)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		Dir:       dir,
		Address:   filepath.Join(dir, "c.sock"),
		Namespace: opts.Namespace,
		LogPath:   filepath.Join(dir, "containerd.log"),
		Config:    filepath.Join(dir, "config.toml"),
		opts:      opts,
	}
	if len(d.Address)+len(".ttrpc") >= 100 {
		return nil, fmt.Errorf("containerd dir %s is too long for a unix socket path; use a shorter one (e.g. under /tmp)", dir)
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	if err := os.WriteFile(d.Config, []byte(d.config()), 0o644); err != nil {
		return nil, err
	}
	if err := d.Start(ctx); err != nil {
		return nil, err
	}
	if !opts.NoImage {
		if _, err := d.ImportTestImage(ctx, d.Namespace); err != nil {
			_ = d.Stop()
			return nil, err
		}
	}
	return d, nil
}

// config is a containerd 1.6/1.7 (version 2) config: no CRI, private paths.
func (d *Daemon) config() string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""
`, filepath.Join(d.Dir, "root"), filepath.Join(d.Dir, "state"), d.Address, d.Address+".ttrpc")
}

// Start (re)starts the daemon process and waits until it serves.
func (d *Daemon) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		return errors.New("containerd is already running")
	}
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.opts.Binary, "--config", d.Config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if d.opts.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		// A test binary that dies must not leave the daemon behind.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	// Pdeathsig fires when the OS thread that forked the daemon ends, not
	// the process, and Go ends threads: netns.NewNetNS and CNI leave theirs
	// locked to be thrown away, and containerd was killed mid-test ("connection
	// refused"). So the fork happens on a thread held until the daemon exits.
	started := make(chan error, 1)
	exit := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		logf.Close()
		close(exit)
	}()
	if err := <-started; err != nil {
		logf.Close()
		return fmt.Errorf("start containerd: %w", err)
	}
	d.cmd, d.exit = cmd, exit
	if err := d.waitServing(ctx, exit); err != nil {
		_ = cmd.Process.Kill()
		<-exit
		d.cmd = nil
		return err
	}
	return nil
}

func (d *Daemon) waitServing(ctx context.Context, exit <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client, err := containerd.New(d.Address, containerd.WithTimeout(time.Second))
	if err != nil {
		return err
	}
	defer client.Close()
	for {
		select {
		case <-exit:
			return fmt.Errorf("containerd exited during startup: %s", d.LogTail(10))
		default:
		}
		if _, err := os.Stat(d.Address); err == nil {
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			ok, _ := client.IsServing(pctx)
			pcancel()
			if ok {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("containerd did not serve on %s: %w; log: %s", d.Address, ctx.Err(), d.LogTail(10))
		case <-exit:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops the daemon with SIGTERM (SIGKILL after 10 s). Running
// containers live on in their shims, as with a real containerd restart.
func (d *Daemon) Stop() error { return d.signal(syscall.SIGTERM, 10*time.Second) }

// Kill kills the daemon with SIGKILL, as a crash would.
func (d *Daemon) Kill() error { return d.signal(syscall.SIGKILL, 0) }

// Restart stops the daemon and starts it again on the same root and state.
func (d *Daemon) Restart(ctx context.Context) error {
	if err := d.Stop(); err != nil {
		return err
	}
	return d.Start(ctx)
}

// Crash does to the daemon what a host reboot does: containerd, the shims
// of its tasks and every process of its containers are SIGKILLed, and what
// lives on tmpfs under /run on a real host is gone: its state directory
// (the tasks' bundles and mounts) and runc's state for the namespace. The
// root directory (containers, images, snapshots) stays. Start brings the
// daemon back, with every container and no task.
func (d *Daemon) Crash() error {
	errs := []error{d.Kill()}
	killShims(d.Address)
	procs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", d.Namespace, "*", "cgroup.procs"))
	more, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", d.Namespace, "*", "cgroup.procs"))
	for _, p := range append(procs, more...) {
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	state := filepath.Join(d.Dir, "state")
	errs = append(errs, unmountUnder(state), os.RemoveAll(state), os.RemoveAll(filepath.Join("/run/containerd/runc", d.Namespace)))
	return errors.Join(errs...)
}

// PID is the daemon's process ID (0 when stopped).
func (d *Daemon) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

func (d *Daemon) signal(sig syscall.Signal, grace time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return nil
	}
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.exit:
	case <-time.After(grace):
		_ = d.cmd.Process.Kill()
		<-d.exit
	}
	d.cmd = nil
	return nil
}

// Shutdown kills every container of every namespace, stops the daemon, and
// unmounts what it left mounted under Dir. It does not remove Dir.
func (d *Daemon) Shutdown(ctx context.Context) error {
	var errs []error
	nss := []string{d.Namespace}
	if d.PID() != 0 {
		listed, err := d.removeAllContainers(ctx)
		errs = append(errs, err)
		nss = append(nss, listed...) // tests make more (vt-…-ctr, vt-…-docker)
	}
	errs = append(errs, d.Stop())
	killShims(d.Address)
	errs = append(errs, unmountUnder(d.Dir))
	for _, ns := range nss {
		removeNamespaceLeftovers(ns)
	}
	return errors.Join(errs...)
}

// killShims kills the shims still serving this daemon's tasks: a task made
// for a client that was SIGKILLed half-way is one containerd no longer
// lists, so removeAllContainers misses it and its shim outlived the test.
func killShims(address string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-address" && args[i+1] == address {
				if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
				break
			}
		}
	}
}

// removeNamespaceLeftovers removes the empty per-namespace directories runc
// leaves in its state root and the cgroup hierarchies. Only the random
// namespaces made here: a shared one ("vigil") may be in use by another daemon.
func removeNamespaceLeftovers(ns string) {
	if !strings.HasPrefix(ns, "vt-") {
		return
	}
	// The containers' dirs first: a task whose shim was killed was never
	// deleted, so runc's state and its cgroup stay behind.
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", ns, "*"))
	more, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", ns, "*"))
	dirs = append(dirs, more...)
	more, _ = filepath.Glob(filepath.Join("/sys/fs/cgroup/*", ns))
	dirs = append(dirs, more...)
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", ns))
	for _, dir := range dirs {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			_ = syscall.Rmdir(dir) // fails, harmlessly, while a process is in it
		}
	}
	states, _ := filepath.Glob(filepath.Join("/run/containerd/runc", ns, "*", "state.json"))
	for _, st := range states {
		_ = os.Remove(st)
		_ = syscall.Rmdir(filepath.Dir(st))
	}
	_ = syscall.Rmdir(filepath.Join("/run/containerd/runc", ns))
}

// removeAllContainers returns the namespaces it found.
func (d *Daemon) removeAllContainers(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client, err := containerd.New(d.Address)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	nss, err := client.NamespaceService().List(ctx)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		cs, err := client.Containers(nctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, c := range cs {
			if task, err := c.Task(nctx, nil); err == nil {
				if _, err := task.Delete(nctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
					errs = append(errs, err)
				}
			}
			if err := c.Delete(nctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	return nss, errors.Join(errs...)
}

// ImportTestImage builds the busybox test image and imports it into namespace.
func (d *Daemon) ImportTestImage(ctx context.Context, namespace string) ([]string, error) {
	tar, err := testimage.Tar()
	if err != nil {
		return nil, err
	}
	rt, err := vcontainerd.New(ctx, vcontainerd.Config{Address: d.Address, Namespace: namespace, LogDir: filepath.Join(d.Dir, "logs")})
	if err != nil {
		return nil, err
	}
	defer rt.Close()
	return rt.ImportImage(ctx, bytes.NewReader(tar))
}

// LogTail is the last n lines of containerd's own log, for error messages.
func (d *Daemon) LogTail(n int) string {
	b, _ := os.ReadFile(d.LogPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// unmountUnder lazily unmounts every mount below dir, deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			mounts = append(mounts, fields[4])
		}
	}
	var errs []error
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mounts[i], err))
		}
	}
	return errors.Join(errs...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Signal sends sig to the task of a container in the daemon's namespace, as
// something outside Vigil would (an OOM kill, an operator, a crash).
func (d *Daemon) Signal(ctx context.Context, containerID string, sig syscall.Signal) error {
	client, err := containerd.New(d.Address)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx = namespaces.WithNamespace(ctx, d.Namespace)
	c, err := client.LoadContainer(ctx, containerID)
	if err != nil {
		return err
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return err
	}
	return task.Kill(ctx, sig)
}
