package containerd_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/runtime"
)

// A named volume keeps its data across restarts and container removal;
// only RemoveVolumes deletes it. A bind mount shows the node's files, and a
// read-only one cannot be written.
func TestVolumes(t *testing.T) {
	d, rt, ctx, id := setup(t, "vol")
	src := filepath.Join(d.Dir, "bind")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "config"), []byte("from the node\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := containerdtest.TestImage("cat /cfg/config; (echo x > /cfg/new) 2>/dev/null && echo bind writable; " +
		"cat /data/count 2>/dev/null; echo run >> /data/count")
	spec.Volumes = []runtime.Volume{{Source: src, Target: "/cfg", ReadOnly: true}, {Name: "state", Target: "/data"}}

	runSpec(t, rt, id, spec)
	wait(t, rt, id)
	if _, err := rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	wait(t, rt, id)
	// Removing the container keeps the volume.
	if err := rt.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	runSpec(t, rt, id, spec)
	wait(t, rt, id)
	out, err := logOf(rt, ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	log := string(out)
	if !strings.Contains(log, "from the node") || strings.Contains(log, "bind writable") {
		t.Errorf("read-only bind mount: log %q; want the node's file and no write", log)
	}
	if strings.Count(log, "run") != 3 { // each run prints the runs before it (0 + 1 + 2); Remove keeps the log
		t.Errorf("named volume: log %q; want the third run to see the two runs before it", log)
	}
	dir := rt.VolumeDir(id, "state")
	if b, err := os.ReadFile(filepath.Join(dir, "count")); err != nil || strings.Count(string(b), "run") != 3 {
		t.Errorf("volume on the node: %q, %v", b, err)
	}
	if err := rt.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := rt.RemoveVolumes(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("volume left after RemoveVolumes: %v", err)
	}
}

// What only the node can check is refused as ErrInvalidSpec, naming the field.
func TestServingSpecsTheNodeRefuses(t *testing.T) {
	_, rt, ctx, _ := setup(t, "bad")
	for _, tc := range []struct {
		name  string
		edit  func(*runtime.ContainerSpec)
		field string
	}{
		{"missing bind source", func(s *runtime.ContainerSpec) {
			s.Volumes = []runtime.Volume{{Source: "/nonexistent/vigil", Target: "/x"}}
		}, "volumes[0].source"},
		{"relative target", func(s *runtime.ContainerSpec) {
			s.Volumes = []runtime.Volume{{Name: "v", Target: "data"}}
		}, "volumes[0].target"},
		{"unknown stop signal", func(s *runtime.ContainerSpec) { s.StopSignal = "SIGNOPE" }, "stop_signal"},
	} {
		spec := containerdtest.TestImage("true")
		tc.edit(&spec)
		err := rt.Create(ctx, newID("bad"), spec)
		if !errors.Is(err, runtime.ErrInvalidSpec) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v; want ErrInvalidSpec naming %s", tc.name, err, tc.field)
		}
	}
}

// With init: true, tini is PID 1 and passes SIGTERM to httpd, which then
// exits at once: the task ends by SIGTERM (143), not by the SIGKILL after
// the grace period (137) that httpd as PID 1 would need.
func TestInitForwardsStopSignal(t *testing.T) {
	_, rt, ctx, id := setup(t, "init")
	spec := containerdtest.TestImage("cat /proc/1/cmdline | tr '\\0' ' '; echo; echo ready; exec httpd -f -p 8080")
	spec.Init = true
	runSpec(t, rt, id, spec)
	waitForLog(t, rt, id, "ready")
	if err := rt.Stop(ctx, id, time.Minute); err != nil {
		t.Fatal(err)
	}
	st, err := rt.State(ctx, id)
	if err != nil || st.ExitCode != 143 {
		t.Fatalf("state after stop = %+v, %v; want exit 143 (SIGTERM through the init)", st, err)
	}
	out, _ := logOf(rt, ctx, id, 0)
	if !strings.Contains(string(out), "/sbin/vigil-init -- /bin/sh") {
		t.Errorf("PID 1 is not the init: %q", out)
	}
}

// stop_signal replaces SIGTERM as the first signal of a stop.
func TestStopSignal(t *testing.T) {
	_, rt, ctx, id := setup(t, "sig")
	spec := containerdtest.TestImage("trap 'echo got USR1; exit 0' USR1; trap '' TERM; echo ready; while :; do sleep 0.1; done")
	spec.StopSignal = "SIGUSR1"
	runSpec(t, rt, id, spec)
	waitForLog(t, rt, id, "ready")
	if err := rt.Stop(ctx, id, time.Minute); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, rt, id, "got USR1")
	if st, err := rt.State(ctx, id); err != nil || st.ExitCode != 0 {
		t.Fatalf("state after stop = %+v, %v; want exit 0", st, err)
	}
}

// Preflight names each problem by its field and makes no container: an
// image not there under pull_policy never, a missing bind source.
func TestPreflight(t *testing.T) {
	_, rt, ctx, id := setup(t, "pre")
	good := containerdtest.TestImage("true")
	if p, err := rt.Preflight(ctx, id, good); err != nil || len(p) != 0 {
		t.Fatalf("a spec the node can run: %v, %v", p, err)
	}
	bad := good
	bad.Image, bad.PullPolicy = "docker.io/library/nope:1", runtime.PullNever
	bad.Volumes = []runtime.Volume{{Source: "/nonexistent/vigil", Target: "/x"}}
	p, err := rt.Preflight(ctx, id, bad)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 2 || p[0].Field != "image" || !strings.Contains(p[0].Reason, "pull_policy is never") ||
		p[1].Field != "volumes[0].source" || !strings.Contains(p[1].Reason, "does not exist on this node") {
		t.Fatalf("problems %+v; want image (pull_policy never) and volumes[0].source", p)
	}
	if _, err := rt.State(ctx, id); !errors.Is(err, runtime.ErrContainerNotFound) {
		t.Fatalf("preflight made a container: %v", err)
	}
}
