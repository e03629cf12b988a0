package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-run/vigil/lease"
)

// build builds vigil-fence for the test.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vigil-fence")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func renew(t *testing.T, dir string, ago time.Duration) {
	t.Helper()
	if err := lease.Write(dir, lease.Lease{Node: "n", Sent: lease.Now() - ago, At: time.Now().Add(-ago)}); err != nil {
		t.Fatal(err)
	}
}

func exitCode(t *testing.T, cmd *exec.Cmd, limit time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		t.Fatalf("vigil-fence still runs after %s", limit)
		return -1
	}
}

// The fence runs the command while the lease is fresh and passes its exit
// status and signals through; once the lease is older than --after it
// kills the command and exits lease.FencedExit; it never starts a command under
// a stale or missing lease.
func TestFence(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	fence := func(after string, args ...string) *exec.Cmd {
		return exec.Command(bin, append([]string{"--lease-dir", dir, "--after", after, "--"}, args...)...)
	}

	if code := exitCode(t, func() *exec.Cmd { c := fence("10s", "true"); _ = c.Start(); return c }(), 10*time.Second); code != lease.FencedExit {
		t.Fatalf("no lease file: exit %d; want %d (not started)", code, lease.FencedExit)
	}
	renew(t, dir, 0)
	c := fence("10s", "sh", "-c", "exit 3")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, c, 10*time.Second); code != 3 {
		t.Fatalf("exit %d; want the command's 3", code)
	}
	c = fence("10s", "sleep", "60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	_ = c.Process.Signal(syscall.SIGTERM)
	if code := exitCode(t, c, 10*time.Second); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("SIGTERM: exit %d; want the command killed by it", code)
	}

	// A lease 2 s old with a limit of 3 s: it runs, then is fenced about a
	// second later, with its child.
	renew(t, dir, 2*time.Second)
	c = fence("3s", "sh", "-c", "sleep 60 & echo $! > "+filepath.Join(dir, "pid")+"; wait")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if code := exitCode(t, c, 20*time.Second); code != lease.FencedExit {
		t.Fatalf("stale lease: exit %d; want %d", code, lease.FencedExit)
	}
	if ran := time.Since(began); ran < 500*time.Millisecond {
		t.Fatalf("fenced after %s; want once the lease was 3s old", ran)
	}
	pid, _ := os.ReadFile(filepath.Join(dir, "pid"))
	if len(pid) > 0 {
		time.Sleep(100 * time.Millisecond)
		if _, err := os.Stat("/proc/" + string(pid[:len(pid)-1])); err == nil {
			b, _ := os.ReadFile("/proc/" + string(pid[:len(pid)-1]) + "/stat")
			if len(b) > 0 && !containsState(string(b), "Z") {
				t.Fatalf("the command's child %s still runs after the fence", pid)
			}
		}
	}
}

// containsState reports whether a /proc/PID/stat line shows state s.
func containsState(stat, s string) bool {
	for i := len(stat) - 1; i > 0; i-- {
		if stat[i] == ')' {
			return len(stat) > i+2 && stat[i+2:i+3] == s
		}
	}
	return false
}
