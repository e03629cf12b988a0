package containerdtest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/internal/testimage"
	"github.com/vigil-run/vigil/runtime"
)

func TestDaemonRestartKeepsImagesAndShutdownCleansUp(t *testing.T) {
	var d *Daemon
	t.Cleanup(func() { // runs after Start's cleanup
		if d == nil { // skipped before the daemon started
			return
		}
		if _, err := os.Stat(d.Dir); !os.IsNotExist(err) {
			t.Errorf("daemon dir %s left behind: %v", d.Dir, err)
		}
		if mountinfo, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mountinfo), d.Dir) {
			t.Errorf("mounts left under %s", d.Dir)
		}
	})
	d = Start(t)
	rt := d.Runtime(t)
	if _, err := d.ImportTestImage(context.Background(), d.Namespace); err != nil {
		t.Fatal(err)
	}
	id := runtime.ContainerID{Deployment: "h", Service: "s", Replica: 1}
	if err := rt.Create(context.Background(), id, TestImage("sleep 1000")); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if ok, err := rt.HasImage(ctx, testimage.Ref); !ok || err != nil {
		t.Fatalf("test image imported = %v, %v", ok, err)
	}
	pid := d.PID()
	if err := d.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if d.PID() == pid || d.PID() == 0 {
		t.Fatalf("restart kept pid %d", pid)
	}
	if ok, err := rt.HasImage(ctx, testimage.Ref); !ok || err != nil {
		t.Fatalf("after restart the runtime reconnects and sees the image: %v, %v", ok, err)
	}
}

func TestStartDaemonRejectsLongDirs(t *testing.T) {
	_, err := StartDaemon(context.Background(), "/tmp/"+strings.Repeat("x", 120), Options{NoImage: true})
	if err == nil || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("long dir: %v", err)
	}
}

func TestUnavailableSkipsUnlessRequired(t *testing.T) {
	if os.Getenv(RequireEnv) == "1" {
		t.Skip("exercises the skip path, which " + RequireEnv + "=1 turns into a failure")
	}
	ran := t.Run("inner", func(t *testing.T) {
		Unavailable(t, "no containerd here")
		t.Error("Unavailable did not stop the test")
	})
	if !ran {
		t.Fatal("a skipped test must not fail")
	}
}
