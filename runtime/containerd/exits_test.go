package containerd_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/runtime"
)

// Every exit says why: Exited with its code, Signaled with the signal's
// name, OOMKilled from containerd's OOM event (not from the code 137), and
// the task's start time.
func TestExitReasons(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Runtime(t)

	t.Run("exited", func(t *testing.T) {
		id := newID("exited")
		info := run(t, rt, id, "exit 3")
		st := wait(t, rt, id)
		if st.Cause != runtime.ExitExited || st.Signal != "" || st.ExitCode != 3 || !st.StartedAt.Equal(info.StartedAt) {
			t.Fatalf("state %+v, want Exited 3 started at %v", st, info.StartedAt)
		}
		// A prober late to an exited task cannot rename its exit.
		if err := rt.MarkUnhealthy(testCtx(t), id); err == nil {
			t.Fatal("an exited task was marked unhealthy")
		}
		if again, _ := rt.State(testCtx(t), id); again.Cause != runtime.ExitExited {
			t.Fatalf("after a late mark: %+v", again)
		}
	})
	t.Run("signaled", func(t *testing.T) {
		id := newID("signaled")
		run(t, rt, id, "echo up; sleep 1000")
		killTask(t, d, id, syscall.SIGKILL)
		st := wait(t, rt, id)
		if st.Cause != runtime.ExitSignaled || st.Signal != "SIGKILL" || st.ExitCode != 137 {
			t.Fatalf("state %+v, want Signaled SIGKILL 137", st)
		}
	})
	t.Run("oom", func(t *testing.T) {
		id := newID("oom")
		spec := containerdtest.TestImage("echo up; tail /dev/zero")
		spec.Resources = &runtime.Resources{MemoryBytes: 16 << 20}
		runSpec(t, rt, id, spec)
		st := wait(t, rt, id)
		if st.Cause != runtime.ExitOOMKilled || st.Signal != "SIGKILL" || st.ExitCode != 137 || st.StartedAt.IsZero() {
			t.Fatalf("state %+v, want OOMKilled (SIGKILL, 137) with a start time", st)
		}
		if again, err := rt.State(testCtx(t), id); err != nil || again != st {
			t.Fatalf("State after Wait = %+v, %v; want %+v", again, err, st)
		}
	})
	t.Run("unhealthy", func(t *testing.T) {
		id := newID("unhealthy")
		first := run(t, rt, id, "sleep 1000")
		// The prober of the first task decides to stop it just as the task
		// is restarted (a fast restart): the new task is left alone.
		if err := rt.Stop(testCtx(t), id, 0); err != nil {
			t.Fatal(err)
		}
		wait(t, rt, id)
		second, err := rt.Start(testCtx(t), id)
		if err != nil {
			t.Fatal(err)
		}
		if second.StartedAt.Equal(first.StartedAt) {
			t.Fatalf("restarted task has the first's start time %v", first.StartedAt)
		}
		if err := rt.StopUnhealthy(testCtx(t), id, first.StartedAt, time.Second); !errors.Is(err, runtime.ErrTaskChanged) {
			t.Fatalf("stop of the first task after a restart: %v; want ErrTaskChanged", err)
		}
		if st, err := rt.State(testCtx(t), id); err != nil || st.Status != runtime.StatusRunning {
			t.Fatalf("the new task after the old prober's stop: %+v, %v; want running", st, err)
		}
		if err := rt.StopUnhealthy(testCtx(t), id, second.StartedAt, time.Second); err != nil {
			t.Fatal(err)
		}
		st := wait(t, rt, id)
		if st.Cause != runtime.ExitUnhealthy || st.ExitCode != 137 && st.ExitCode != 143 {
			t.Fatalf("state %+v, want Unhealthy", st)
		}
	})
}

// resources become the container's cgroup limits.
func TestResourcesAreCgroupLimits(t *testing.T) {
	d, rt, ctx, id := setup(t, "limits")
	spec := containerdtest.TestImage("sleep 1000")
	spec.Resources = &runtime.Resources{MemoryBytes: 64 << 20, CPUs: 0.5, Pids: 256}
	runSpec(t, rt, id, spec)
	c, err := rt.Client().LoadContainer(namespaces.WithNamespace(ctx, d.Namespace), id.ContainerName())
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Spec(namespaces.WithNamespace(ctx, d.Namespace))
	if err != nil {
		t.Fatal(err)
	}
	res := s.Linux.Resources
	if res.Memory == nil || *res.Memory.Limit != 64<<20 || res.CPU == nil || *res.CPU.Quota != 50000 || *res.CPU.Period != 100000 ||
		res.Pids == nil || *res.Pids.Limit != 256 {
		t.Fatalf("OCI resources %+v, want memory 64Mi, quota 50000/100000, pids 256", res)
	}
	// And the kernel enforces them (cgroup v1 or v2, at containerd's default cgroup path).
	name := id.ContainerName()
	read := 0
	for file, want := range map[string]string{
		"memory/" + d.Namespace + "/" + name + "/memory.limit_in_bytes": "67108864",
		"pids/" + d.Namespace + "/" + name + "/pids.max":                "256",
		"cpu/" + d.Namespace + "/" + name + "/cpu.cfs_quota_us":         "50000",
		d.Namespace + "/" + name + "/memory.max":                        "67108864",
		d.Namespace + "/" + name + "/pids.max":                          "256",
		d.Namespace + "/" + name + "/cpu.max":                           "50000 100000",
	} {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", file))
		if err != nil {
			continue // the other cgroup version
		}
		read++
		if got := strings.TrimSpace(string(b)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if read < 3 {
		t.Errorf("read %d of the container's cgroup limit files under /sys/fs/cgroup, want 3", read)
	}
	_ = rt.Remove(ctx, id)
}
