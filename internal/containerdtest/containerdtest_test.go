package containerdtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/vigil-run/vigil/internal/testimage"
	"github.com/vigil-run/vigil/replica"
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
	id := replica.ID{Deployment: "h", Service: "s", Replica: 1}
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

// recordingTB records what Unavailable asks of its test instead of doing it,
// so both paths are tested without a skipped test in the run.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

// Like the real ones, Skip and Fatalf end the goroutine that calls them.
func (r *recordingTB) Skip(args ...any) {
	r.skipped = fmt.Sprint(args...)
	goruntime.Goexit()
}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	goruntime.Goexit()
}

// unavailable calls Unavailable on a goroutine of its own, which it may end.
func unavailable(tb *recordingTB, reason string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		Unavailable(tb, reason)
	}()
	<-done
}

func TestUnavailableSkipsUnlessRequired(t *testing.T) {
	t.Setenv(RequireEnv, "")
	skip := &recordingTB{TB: t}
	unavailable(skip, "no containerd here")
	if !strings.Contains(skip.skipped, "no containerd here") || skip.failed != "" {
		t.Fatalf("without %s: skipped %q, failed %q; want a skip with the reason", RequireEnv, skip.skipped, skip.failed)
	}

	t.Setenv(RequireEnv, "1")
	fail := &recordingTB{TB: t}
	unavailable(fail, "no containerd here")
	if !strings.Contains(fail.failed, "no containerd here") || fail.skipped != "" {
		t.Fatalf("with %s=1: skipped %q, failed %q; want a failure with the reason", RequireEnv, fail.skipped, fail.failed)
	}
}

// The daemon dies with the test binary (Pdeathsig), but not with the OS
// thread that started it: Go throws away threads that stay locked, as
// netns.NewNetNS does, and that killed containerd in the middle of tests.
func TestDaemonOutlivesTheThreadThatStartedIt(t *testing.T) {
	if err := Prerequisites(); err != nil {
		Unavailable(t, err.Error())
	}
	dir, err := os.MkdirTemp("", "ctd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type result struct {
		d   *Daemon
		tid int
		err error
	}
	done := make(chan result)
	go func() {
		// Hold this thread so that the starter below is not on the main
		// thread, which Go wedges rather than ends.
		goruntime.LockOSThread()
		defer goruntime.UnlockOSThread()
		inner := make(chan result)
		go func() {
			goruntime.LockOSThread() // never unlocked: the thread ends with this goroutine
			d, err := StartDaemon(ctx, dir, Options{NoImage: true})
			inner <- result{d, syscall.Gettid(), err}
		}()
		done <- <-inner
	}()
	r := <-done
	if r.err != nil {
		Unavailable(t, "private containerd did not start: "+r.err.Error())
	}
	defer func() { _ = r.d.Shutdown(context.Background()) }()
	// The pdeath signal is sent as the thread exits, before its /proc entry goes.
	task := fmt.Sprintf("/proc/self/task/%d", r.tid)
	for _, err := os.Stat(task); err == nil; _, err = os.Stat(task) {
		select {
		case <-ctx.Done():
			t.Fatalf("thread %d did not end", r.tid)
		case <-time.After(10 * time.Millisecond):
		}
	}
	client, err := containerd.New(r.d.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Version(ctx); err != nil {
		t.Fatalf("containerd died with the thread that started it: %v; log: %s", err, r.d.LogTail(5))
	}
}

// A root PATH without /usr/sbin (env -i) is reported as such, not mended by
// an apt-get install of a package that is there.
func TestInstalledButNotOnPath(t *testing.T) {
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", "iptables").Output(); string(out) != "install ok installed" || os.Geteuid() != 0 {
		t.Skip("needs root and Debian's iptables package installed")
	}
	t.Setenv("PATH", "/usr/bin:/bin")
	if err := checkPrerequisites(); err == nil || !strings.Contains(err.Error(), "iptables is installed but its command is not on PATH") {
		t.Fatalf("checkPrerequisites with PATH=/usr/bin:/bin: %v; want iptables named as not on PATH", err)
	}
}

// A shim whose task the daemon no longer deletes (here: the daemon was
// stopped first) does not outlive Shutdown.
func TestShutdownKillsLeftoverShims(t *testing.T) {
	d := Start(t)
	rt := d.Runtime(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := replica.ID{Deployment: "h", Service: "shim", Replica: 1}
	if err := rt.Create(ctx, id, TestImage("true")); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	shims := func() (n int) {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), "containerd-shim") && strings.Contains(string(b), d.Address+"\x00") {
				n++
			}
		}
		return n
	}
	if shims() == 0 {
		t.Fatal("no shim found for the started task")
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := d.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); shims() > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d shims of %s left after Shutdown", shims(), d.Address)
		}
	}
	if _, err := os.Stat(filepath.Join("/run/containerd/runc", d.Namespace)); !os.IsNotExist(err) {
		t.Errorf("runc state of namespace %s left behind: %v", d.Namespace, err)
	}
}
