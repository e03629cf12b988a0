package containerd_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/go-digest"

	"github.com/vigil-run/vigil/ctrlog"
	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/internal/registrytest"
	"github.com/vigil-run/vigil/internal/testimage"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	vcontainerd "github.com/vigil-run/vigil/runtime/containerd"
)

var replicas atomic.Int32

// newID is a fresh replica of deployment "t" for each call.
func newID(service string) replica.ID {
	return replica.ID{Deployment: "t", Service: service, Replica: int(replicas.Add(1))}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// setup starts a private containerd and names a fresh replica of service.
func setup(t *testing.T, service string) (*containerdtest.Daemon, *vcontainerd.Runtime, context.Context, replica.ID) {
	d := containerdtest.Start(t)
	return d, d.Runtime(t), testCtx(t), newID(service)
}

// run creates and starts a busybox container running script.
func run(t *testing.T, rt *vcontainerd.Runtime, id replica.ID, script string) runtime.StartInfo {
	t.Helper()
	return runSpec(t, rt, id, containerdtest.TestImage(script))
}

// runSpec creates and starts a container.
func runSpec(t *testing.T, rt *vcontainerd.Runtime, id replica.ID, spec runtime.ContainerSpec) runtime.StartInfo {
	t.Helper()
	ctx := testCtx(t)
	if err := rt.Create(ctx, id, spec); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	info, err := rt.Start(ctx, id)
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	return info
}

func wait(t *testing.T, rt *vcontainerd.Runtime, id replica.ID) runtime.ContainerState {
	t.Helper()
	st, err := rt.Wait(testCtx(t), id)
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	return st
}

// killTask sends sig to the task directly, as something outside Vigil would.
func killTask(t *testing.T, d *containerdtest.Daemon, id replica.ID, sig syscall.Signal) {
	t.Helper()
	if err := d.Signal(testCtx(t), id.ContainerName(), sig); err != nil {
		t.Fatal(err)
	}
}

func TestExitCodeFidelity(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Runtime(t)

	for _, tc := range []struct {
		script string
		kill   bool
		want   int
	}{
		{script: "exit 0", want: 0},
		{script: "exit 3", want: 3},
		{script: "echo up; sleep 1000", kill: true, want: 137},
	} {
		t.Run(fmt.Sprintf("exit-%d", tc.want), func(t *testing.T) {
			id := newID("exit")
			began := time.Now()
			info := run(t, rt, id, tc.script)
			t.Logf("create+start of busybox took %v (pid %d)", time.Since(began), info.PID)
			if info.AlreadyRunning || info.StartedAt.IsZero() {
				t.Fatalf("start info = %+v, want a fresh start with a time", info)
			}
			if tc.kill {
				killTask(t, d, id, syscall.SIGKILL)
			}
			st := wait(t, rt, id)
			if st.Status != runtime.StatusExited || st.ExitCode != tc.want {
				t.Fatalf("state = %+v, want Exited with code %d", st, tc.want)
			}
			if st.ExitedAt.Before(began.Add(-time.Second)) || st.ExitedAt.After(time.Now().Add(time.Second)) {
				t.Fatalf("exited at %v, not between start %v and now", st.ExitedAt, began)
			}
			again, err := rt.State(testCtx(t), id)
			if err != nil || again != st {
				t.Fatalf("State after Wait = %+v, %v; want %+v", again, err, st)
			}
		})
	}
}

func TestStartIsIdempotent(t *testing.T) {
	_, rt, ctx, id := setup(t, "idem")

	first := run(t, rt, id, "sleep 1000")
	if err := rt.Create(ctx, id, containerdtest.TestImage("sleep 1000")); err != nil {
		t.Fatalf("second create: %v", err)
	}
	second, err := rt.Start(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !second.AlreadyRunning || second.PID != first.PID || !second.StartedAt.Equal(first.StartedAt) {
		t.Fatalf("second start = %+v, want AlreadyRunning with pid %d started %v", second, first.PID, first.StartedAt)
	}

	if err := rt.Stop(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	third, err := rt.Start(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if third.AlreadyRunning || third.PID == first.PID {
		t.Fatalf("start after exit = %+v, want a new task", third)
	}
	if st, _ := rt.State(ctx, id); st.Status != runtime.StatusRunning {
		t.Fatalf("state after restart = %+v, want Running", st)
	}
}

func TestWaitReturnsExitThatHappenedUnwatched(t *testing.T) {
	_, rt, ctx, id := setup(t, "unwatched")

	run(t, rt, id, "exit 7")
	eventually(t, func() (bool, string) {
		st, err := rt.State(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return st.Done(), fmt.Sprintf("container still %v", st.Status)
	})
	time.Sleep(200 * time.Millisecond)
	called := time.Now()
	st := wait(t, rt, id)
	if st.ExitCode != 7 || !st.ExitedAt.Before(called) {
		t.Fatalf("wait = %+v, want code 7 from before %v", st, called)
	}
}

func TestStopGraceThenKill(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Runtime(t)
	ctx := testCtx(t)

	t.Run("trapped SIGTERM exits gracefully", func(t *testing.T) {
		id := newID("trap")
		run(t, rt, id, "trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.1; done")
		waitForLog(t, rt, id, "ready")
		if err := rt.Stop(ctx, id, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		st, err := rt.State(ctx, id)
		if err != nil || st.Status != runtime.StatusExited || st.ExitCode != 0 {
			t.Fatalf("state after graceful stop = %+v, %v; want exit 0", st, err)
		}
		waitForLog(t, rt, id, "got TERM")
	})

	t.Run("ignored SIGTERM is followed by SIGKILL", func(t *testing.T) {
		id := newID("ignore")
		run(t, rt, id, "trap '' TERM; echo ready; while :; do sleep 0.1; done")
		waitForLog(t, rt, id, "ready")
		grace := time.Second
		began := time.Now()
		if err := rt.Stop(ctx, id, grace); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); took < grace {
			t.Fatalf("stop returned after %v, before the %v grace period", took, grace)
		}
		st, err := rt.State(ctx, id)
		if err != nil || st.ExitCode != 137 {
			t.Fatalf("state after kill = %+v, %v; want exit 137", st, err)
		}
		if err := rt.Stop(ctx, id, grace); err != nil {
			t.Fatalf("stopping a stopped container: %v", err)
		}
	})
}

// logOf is the replica's log without its run markers (tail counts them).
func logOf(rt *vcontainerd.Runtime, ctx context.Context, id replica.ID, tail int) ([]byte, error) {
	out, err := rt.Logs(ctx, id, tail)
	var b []byte
	for _, line := range strings.SplitAfter(string(out), "\n") {
		if !strings.HasPrefix(line, ctrlog.MarkerPrefix) {
			b = append(b, line...)
		}
	}
	return b, err
}

func waitForLog(t *testing.T, rt *vcontainerd.Runtime, id replica.ID, want string) {
	t.Helper()
	eventually(t, func() (bool, string) {
		out, err := logOf(rt, testCtx(t), id, 0)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(out), want), fmt.Sprintf("log of %s never showed %q; it has:\n%s", id, want, out)
	})
}

// eventually polls check until it holds, failing with its message after 30 s.
func eventually(t *testing.T, check func() (ok bool, failure string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, failure := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(failure)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLogsKeptAcrossRestarts(t *testing.T) {
	_, rt, ctx, id := setup(t, "logs")
	spec := containerdtest.TestImage("echo out; echo err >&2; sleep 0.2; echo last; exit 1")

	if err := rt.Create(ctx, id, spec); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := rt.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
		if st := wait(t, rt, id); st.ExitCode != 1 {
			t.Fatalf("run %d: %+v", i, st)
		}
	}
	out, err := rt.Logs(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Each run starts with a marker; the second and third say how the one
	// before ended.
	if strings.Count(string(out), ctrlog.MarkerPrefix+"run ") != 3 || strings.Count(string(out), " ended: exit code 1 at ") != 2 ||
		!strings.HasPrefix(string(out), ctrlog.MarkerPrefix+"run 1 at ") {
		t.Fatalf("run markers after 3 runs:\n%s", out)
	}
	// stdout and stderr are separate pipes: only their own order is kept.
	if strings.Count(string(out), "out\n") != 3 || strings.Count(string(out), "err\n") != 3 || strings.Count(string(out), "last\n") != 3 {
		t.Fatalf("logs after 3 runs:\n%s", out)
	}
	last, err := logOf(rt, ctx, id, 1)
	if err != nil || string(last) != "last\n" {
		t.Fatalf("tail 1 = %q, %v", last, err)
	}
}

func TestEnvWorkdirAndEntrypoint(t *testing.T) {
	_, rt, ctx, id := setup(t, "env")
	spec := containerdtest.TestImage(`echo "mode=$MODE dir=$(pwd) host=$(hostname) uid=$(id -u)"`)
	spec.Env = map[string]string{"MODE": "prod"}
	spec.WorkDir = "/tmp"
	runSpec(t, rt, id, spec)
	wait(t, rt, id)
	want := fmt.Sprintf("mode=prod dir=/tmp host=%s uid=0\n", id.ContainerName())
	if out, _ := logOf(rt, ctx, id, 0); string(out) != want {
		t.Fatalf("output = %q, want %q", out, want)
	}

	// Args alone replace the image's CMD (sh), as in Docker.
	argsOnly := newID("args")
	runSpec(t, rt, argsOnly, runtime.ContainerSpec{Image: "busybox:local", PullPolicy: runtime.PullNever, Args: []string{"echo", "hi"}})
	wait(t, rt, argsOnly)
	if out, _ := logOf(rt, ctx, argsOnly, 0); string(out) != "hi\n" {
		t.Fatalf("args-only output = %q", out)
	}
}

func TestTypedErrors(t *testing.T) {
	d, rt, ctx, id := setup(t, "missing")

	spec := containerdtest.TestImage("true")
	spec.Image = "docker.io/library/not-imported:1"
	if err := rt.Create(ctx, id, spec); !errors.Is(err, runtime.ErrImageNotFound) {
		t.Fatalf("create with a missing image: %v, want ErrImageNotFound", err)
	}
	if _, err := rt.Start(ctx, id); !errors.Is(err, runtime.ErrContainerNotFound) {
		t.Fatalf("start of a missing container: %v, want ErrContainerNotFound", err)
	}
	if _, err := rt.State(ctx, id); !errors.Is(err, runtime.ErrContainerNotFound) {
		t.Fatalf("state of a missing container: %v, want ErrContainerNotFound", err)
	}
	if _, err := rt.Wait(ctx, id); !errors.Is(err, runtime.ErrContainerNotFound) {
		t.Fatalf("wait on a missing container: %v, want ErrContainerNotFound", err)
	}
	if err := rt.Remove(ctx, id); err != nil {
		t.Fatalf("remove of a missing container: %v", err)
	}

	down, err := vcontainerd.New(ctx, vcontainerd.Config{Address: d.Dir + "/nobody.sock", LogDir: d.Dir + "/logs2", DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	if _, err := down.State(ctx, id); !errors.Is(err, runtime.ErrUnavailable) {
		t.Fatalf("state with containerd down: %v, want ErrUnavailable", err)
	}
}

func TestIsolateAndRemove(t *testing.T) {
	d, rt, ctx, id := setup(t, "iso")
	run(t, rt, id, "echo crashed; exit 2")
	wait(t, rt, id)
	if err := rt.Isolate(ctx, id); err != nil {
		t.Fatal(err)
	}
	nctx := namespaces.WithNamespace(ctx, d.Namespace)
	c, err := rt.Client().LoadContainer(nctx, id.ContainerName())
	if err != nil {
		t.Fatal(err)
	}
	labels, err := c.Labels(nctx)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"vigil.isolated": "true", "vigil.deployment": "t", "vigil.service": "iso", "vigil.replica": fmt.Sprint(id.Replica)} {
		if labels[k] != v {
			t.Errorf("label %s = %q, want %q (all: %v)", k, labels[k], v, labels)
		}
	}
	if st, err := rt.State(ctx, id); err != nil || st.ExitCode != 2 {
		t.Fatalf("isolated container's exit must be kept: %+v, %v", st, err)
	}
	if out, _ := logOf(rt, ctx, id, 0); string(out) != "crashed\n" {
		t.Fatalf("isolated container's log must be kept: %q", out)
	}

	if err := rt.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.State(ctx, id); !errors.Is(err, runtime.ErrContainerNotFound) {
		t.Fatalf("state after remove: %v", err)
	}
	// The log outlives the container.
	if out, err := logOf(rt, ctx, id, 0); err != nil || string(out) != "crashed\n" {
		t.Fatalf("removed container's log must be kept: %q, %v", out, err)
	}
	// The same replica can be created again afterwards (its snapshot is gone too).
	run(t, rt, id, "exit 0")
	if st := wait(t, rt, id); st.ExitCode != 0 {
		t.Fatalf("recreated: %+v", st)
	}
}

func TestWaitSurvivesContainerdRestart(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Runtime(t)
	for _, how := range []struct {
		name string
		stop func() error
	}{{"crash", d.Kill}, {"graceful", d.Stop}} {
		t.Run(how.name, func(t *testing.T) {
			id := newID("restart")
			run(t, rt, id, "trap 'exit 5' USR1; echo ready; while :; do sleep 0.1; done")
			waitForLog(t, rt, id, "ready")
			waitAcrossRestart(t, d, rt, id, how.stop)
		})
	}
	if v, err := rt.Version(testCtx(t)); err != nil || v == "" {
		t.Fatalf("version after restarts: %q, %v", v, err)
	}
}

// waitAcrossRestart waits on id while containerd is stopped and started
// again, then makes the container exit with 5.
func waitAcrossRestart(t *testing.T, d *containerdtest.Daemon, rt *vcontainerd.Runtime, id replica.ID, stop func() error) {
	type result struct {
		st  runtime.ContainerState
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := rt.Wait(testCtx(t), id)
		done <- result{st, err}
	}()
	time.Sleep(300 * time.Millisecond) // let Wait reach containerd

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	select {
	case r := <-done:
		t.Fatalf("wait returned while containerd was down: %+v, %v", r.st, r.err)
	default:
	}
	if err := d.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	select {
	case r := <-done:
		t.Fatalf("wait returned after containerd came back, before the container exited: %+v, %v", r.st, r.err)
	default:
	}
	if st, err := rt.State(testCtx(t), id); err != nil || st.Status != runtime.StatusRunning {
		t.Fatalf("container after containerd restart: %+v, %v; want Running", st, err)
	}

	killTask(t, d, id, syscall.SIGUSR1)
	select {
	case r := <-done:
		if r.err != nil || r.st.Status != runtime.StatusExited || r.st.ExitCode != 5 {
			t.Fatalf("wait after restart = %+v, %v; want exit 5", r.st, r.err)
		}
	case <-time.After(time.Minute):
		t.Fatal("wait did not return after the container exited")
	}
}

func TestStartFailureIsReportedAsFailed(t *testing.T) {
	_, rt, ctx, id := setup(t, "noexec")
	spec := containerdtest.TestImage("")
	spec.Entrypoint = []string{"/no/such/binary"}
	if err := rt.Create(ctx, id, spec); err != nil {
		t.Fatal(err)
	}
	_, err := rt.Start(ctx, id)
	if err == nil || errors.Is(err, runtime.ErrUnavailable) || errors.Is(err, runtime.ErrContainerNotFound) {
		t.Fatalf("start of a missing executable: %v, want an untyped start failure", err)
	}
	for _, get := range []func(context.Context, replica.ID) (runtime.ContainerState, error){rt.State, rt.Wait} {
		st, err := get(ctx, id)
		if err != nil || st.Status != runtime.StatusFailed || st.ExitCode != -1 || !strings.Contains(st.Reason, "task failed to start") {
			t.Fatalf("state after failed start = %+v, %v; want Failed with the reason", st, err)
		}
	}
}

func TestChangedSpecReplacesStoppedContainer(t *testing.T) {
	_, rt, ctx, id := setup(t, "respec")
	run(t, rt, id, "echo v1")
	wait(t, rt, id)
	runSpec(t, rt, id, containerdtest.TestImage("echo v2"))
	wait(t, rt, id)
	if out, _ := logOf(rt, ctx, id, 1); string(out) != "v2\n" {
		t.Fatalf("after a spec change the container ran %q, want v2", out)
	}

	// A running task is never replaced under the supervisor's feet: the
	// caller hears that it runs another spec.
	run(t, rt, id, "sleep 1000")
	if err := rt.Create(ctx, id, containerdtest.TestImage("echo v3")); !errors.Is(err, runtime.ErrSpecChanged) {
		t.Fatalf("create with a new spec over a running task = %v, want ErrSpecChanged", err)
	}
	if st, _ := rt.State(ctx, id); st.Status != runtime.StatusRunning {
		t.Fatalf("create with a new spec touched the running task: %+v", st)
	}
}

func TestLogsRotate(t *testing.T) {
	d := containerdtest.Start(t)
	cfg := d.RuntimeConfig()
	cfg.LogMaxSize, cfg.LogMaxFiles = 16<<10, 3
	// The logger copied elsewhere, as a worker in a container does.
	logger, err := ctrlog.InstallLogger(filepath.Join(t.TempDir(), "logger"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.LoggerPath = logger
	rt, err := vcontainerd.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	ctx, id := testCtx(t), newID("chatty")
	runSpec(t, rt, id, containerdtest.TestImage("seq 1 5000; echo done"))
	wait(t, rt, id)
	waitForLog(t, rt, id, "done")
	files, _ := filepath.Glob(filepath.Join(rt.LogDir(id), "output.log*"))
	if len(files) != 3 {
		t.Fatalf("log files %v; want the 3 configured", files)
	}
	for _, f := range files {
		if st, err := os.Stat(f); err != nil || st.Size() > cfg.LogMaxSize+ctrlog.MaxLine {
			t.Fatalf("log file %s: %v, %v; want at most about %d bytes", f, st, err, cfg.LogMaxSize)
		}
	}
	out, err := logOf(rt, ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(out), "4999\n5000\ndone\n") || strings.HasPrefix(string(out), "1\n") {
		t.Fatalf("rotated log (%d bytes) = %q...%q", len(out), out[:min(len(out), 40)], out[max(0, len(out)-40):])
	}
}

func TestImportDockerArchiveAndPullPolicies(t *testing.T) {
	d, rt, ctx, id := setup(t, "policy")
	tarball, err := testimage.Tar()
	if err != nil {
		t.Fatal(err)
	}
	// Keep only what `docker save` writes: manifest.json and the blobs.
	var docker bytes.Buffer
	tw := tar.NewWriter(&docker)
	tr := tar.NewReader(bytes.NewReader(tarball))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == "index.json" || hdr.Name == "oci-layout" {
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()

	other := d.RuntimeConfig()
	other.Namespace = d.Namespace + "-docker"
	rt2, err := vcontainerd.New(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	defer rt2.Close()
	names, err := rt2.ImportImage(ctx, &docker)
	if err != nil || len(names) != 1 || names[0] != testimage.Ref {
		t.Fatalf("import docker archive = %v, %v", names, err)
	}
	if ok, err := rt2.HasImage(ctx, "busybox:local"); !ok || err != nil {
		t.Fatalf("HasImage after import = %v, %v", ok, err)
	}
	spec := containerdtest.TestImage("exit 0")
	spec.PullPolicy = runtime.PullIfNotPresent // present: no registry needed
	runSpec(t, rt2, id, spec)
	if st := wait(t, rt2, id); st.ExitCode != 0 {
		t.Fatalf("container from the docker archive: %+v", st)
	}
	if err := rt2.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}

	spec.PullPolicy = "sometimes"
	if err := rt.Create(ctx, id, spec); err == nil || !strings.Contains(err.Error(), "pull_policy") {
		t.Fatalf("bad pull policy: %v", err)
	}
}

func TestExitWhileContainerdIsDownKeepsItsCode(t *testing.T) {
	d, rt, ctx, id := setup(t, "down")
	run(t, rt, id, "sleep 1; exit 6")
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the task exits meanwhile; its shim keeps the status
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st := wait(t, rt, id)
	if st.Status != runtime.StatusExited || st.ExitCode != 6 || st.ExitedAt.IsZero() {
		t.Fatalf("exit while containerd was down = %+v, want 6 with its time", st)
	}
}

// TestPullFromRegistry pulls from a real registry on 127.0.0.1, over TLS
// with a test CA and a password, through each pull policy; a digest pin is
// verified, a wrong password and a stall are typed errors.
func TestPullFromRegistry(t *testing.T) {
	d, _, ctx, _ := setup(t, "pull")
	tarball, err := testimage.Tar()
	if err != nil {
		t.Fatal(err)
	}
	reg := registrytest.Start(t)
	pushed := reg.Push(t, "demo/busybox:v1", tarball)
	// runtimeWith is a runtime of the daemon in a namespace of its own (no
	// image yet) pulling with registry.
	namespaces := 0
	runtimeWith := func(registry vcontainerd.RegistryConfig) *vcontainerd.Runtime {
		cfg := d.RuntimeConfig()
		namespaces++
		cfg.Namespace = fmt.Sprintf("%s-pull%d", d.Namespace, namespaces)
		cfg.Registry = registry
		rt, err := vcontainerd.New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rt.Close() })
		return rt
	}
	rt := runtimeWith(vcontainerd.RegistryConfig{ConfigFile: reg.WriteDockerConfig(t, reg.Password), CAFile: reg.CAFile})
	spec := containerdtest.TestImage("echo pulled")
	spec.Image = reg.Host + "/demo/busybox:v1"

	spec.PullPolicy = runtime.PullNever
	if err := rt.Create(ctx, newID("pull"), spec); !errors.Is(err, runtime.ErrImageNotFound) {
		t.Fatalf("never, not present: %v, want ErrImageNotFound", err)
	}

	spec.PullPolicy = runtime.PullIfNotPresent
	id := newID("pull")
	runSpec(t, rt, id, spec)
	if st := wait(t, rt, id); st.ExitCode != 0 || reg.ManifestRequests(t) == 0 {
		t.Fatalf("if_not_present, not present: %+v after %d manifest requests", st, reg.ManifestRequests(t))
	}
	pulls := reg.ManifestRequests(t)
	runSpec(t, rt, newID("pull"), spec)
	if reg.ManifestRequests(t) != pulls {
		t.Fatal("if_not_present pulled an image that was present")
	}

	spec.PullPolicy = runtime.PullAlways
	runSpec(t, rt, newID("pull"), spec)
	if reg.ManifestRequests(t) == pulls {
		t.Fatal("always did not pull")
	}

	missing := spec
	missing.Image = reg.Host + "/missing/busybox:v1"
	if err := rt.Create(ctx, newID("pull"), missing); !errors.Is(err, runtime.ErrImageNotFound) {
		t.Fatalf("always, unknown to the registry: %v, want ErrImageNotFound", err)
	}

	// Pinned by digest: the pushed manifest's runs, another is not found.
	pinned := spec
	pinned.Image = reg.Host + "/demo/busybox@" + pushed.String()
	id = newID("pull")
	runSpec(t, runtimeWith(vcontainerd.RegistryConfig{ConfigFile: reg.WriteDockerConfig(t, reg.Password), CAFile: reg.CAFile}), id, pinned)
	pinned.Image = reg.Host + "/demo/busybox@" + digest.FromString("another manifest").String()
	if err := rt.Create(ctx, newID("pull"), pinned); !errors.Is(err, runtime.ErrImageNotFound) {
		t.Fatalf("pinned to a digest the registry lacks: %v, want ErrImageNotFound", err)
	}

	// A wrong password, or none: ImagePullUnauthorized, saying where to fix it.
	for name, registry := range map[string]vcontainerd.RegistryConfig{
		"wrong password": {ConfigFile: reg.WriteDockerConfig(t, "not-"+reg.Password), CAFile: reg.CAFile},
		"no credentials": {CAFile: reg.CAFile},
	} {
		refused := runtimeWith(registry)
		// A rollout's preflight names it the same way.
		problems, err := refused.Preflight(ctx, newID("pull"), spec)
		if err != nil || len(problems) != 1 || problems[0].Field != "image" ||
			!strings.HasPrefix(problems[0].Reason, "ImagePullUnauthorized: pull "+spec.Image) {
			t.Fatalf("%s: preflight %+v, %v, want the image's ImagePullUnauthorized", name, problems, err)
		}
		err = refused.Create(ctx, newID("pull"), spec)
		var failed *runtime.PullFailed
		if !errors.Is(err, runtime.ErrImagePullUnauthorized) || !errors.As(err, &failed) ||
			!strings.HasPrefix(failed.Error(), "ImagePullUnauthorized: ") || !strings.Contains(failed.Error(), "--registry-config") {
			t.Fatalf("%s: %v, want ErrImagePullUnauthorized naming --registry-config", name, err)
		}
		if strings.Contains(err.Error(), reg.Password) {
			t.Fatalf("%s: the error shows the password: %v", name, err)
		}
	}

	// The registry's certificate is verified, on 127.0.0.1 too.
	err = runtimeWith(vcontainerd.RegistryConfig{ConfigFile: reg.WriteDockerConfig(t, reg.Password)}).Create(ctx, newID("pull"), spec)
	if err == nil || errors.Is(err, runtime.ErrImagePullUnauthorized) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the registry's CA: %v, want a certificate error", err)
	}

	// A pull that receives nothing for the stall timeout: ImagePullStalled.
	proxy := registrytest.NewProxy(t, reg.Host)
	stalling := runtimeWith(vcontainerd.RegistryConfig{
		ConfigFile: reg.WriteDockerConfig(t, reg.Password, proxy.Addr), CAFile: reg.CAFile, StallTimeout: 2 * time.Second})
	reg.PushRandom(t, "demo/big:v1", 2<<20) // blobs containerd lacks
	proxy.StallAfter(512 << 10)             // in the middle of the layer
	spec.Image = proxy.Addr + "/demo/big:v1"
	created := make(chan error, 1)
	go func() { created <- stalling.Create(ctx, newID("pull"), spec) }()
	var received int64 // the most PullProgress reported while it pulled
	for done := false; !done; {
		select {
		case err = <-created:
			done = true
		case <-time.After(20 * time.Millisecond):
			n, _ := stalling.PullProgress(spec.Image)
			received = max(received, n)
		}
	}
	if !errors.Is(err, runtime.ErrImagePullStalled) || received == 0 {
		t.Fatalf("stalled pull: %v after %d bytes, want ErrImagePullStalled after some", err, received)
	}
}

func TestShimKilledIsAFailureNotAnExit0(t *testing.T) {
	_, rt, ctx, id := setup(t, "shim")
	info := run(t, rt, id, "sleep 1000")
	done := make(chan runtime.ContainerState, 1)
	go func() {
		st, err := rt.Wait(ctx, id)
		if err != nil {
			t.Error(err)
		}
		done <- st
	}()
	time.Sleep(300 * time.Millisecond)

	// The shim is the parent of the container's init process.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", info.PID))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	shim, err := strconv.Atoi(fields[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-done:
		if st.ExitCode == 0 || !st.Done() {
			t.Fatalf("wait after the shim died = %+v, want a non-zero end", st)
		}
		t.Logf("shim killed: %+v", st)
	case <-time.After(30 * time.Second):
		t.Fatal("wait did not return after the shim died")
	}
}

// Two containerds on one host, each with a Vigil in the same namespace
// running the same replica (two `make run` stacks in two worktrees), must
// not share runc's state: with runc's default root both tasks were
// /run/containerd/runc/<namespace>/<name>, so the second failed with
// "container with given ID already exists" and each stack's kills and
// cleanups hit the other's containers (exit 137 over and over).
func TestTwoDaemonsSameNamespaceAndReplica(t *testing.T) {
	d1, d2 := containerdtest.Start(t), containerdtest.Start(t)
	ctx := testCtx(t)
	id := newID("twin")
	var rts []*vcontainerd.Runtime
	for _, d := range []*containerdtest.Daemon{d1, d2} {
		cfg := d.RuntimeConfig()
		cfg.Namespace = d1.Namespace + "-twin" // the same on both
		if _, err := d.ImportTestImage(ctx, cfg.Namespace); err != nil {
			t.Fatal(err)
		}
		rt, err := vcontainerd.New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rt.Remove(context.Background(), id); _ = rt.Close() })
		runSpec(t, rt, id, containerdtest.TestImage("sleep 1000"))
		rts = append(rts, rt)
	}
	for i, rt := range rts {
		st, err := rt.State(ctx, id)
		if err != nil || st.Status != runtime.StatusRunning {
			t.Fatalf("daemon %d: state %+v, %v; want both running", i+1, st, err)
		}
	}
}
