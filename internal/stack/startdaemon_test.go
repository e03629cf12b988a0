package stack

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// make run's start check (scripts/lib.sh) never takes a daemon it has just
// started for a dead one: until the forked shell has exec'd, the child's
// /proc cmdline is the script's, not the daemon's (make run printed "worker
// exited during startup" for a worker that ran).
func TestStartedDaemonIsAliveAtOnce(t *testing.T) {
	lib, err := filepath.Abs("../../scripts/lib.sh")
	if err != nil {
		t.Fatal(err)
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	dir := t.TempDir()
	// A daemon whose name is not in the calling script's command line.
	daemon := filepath.Join(dir, "vigil-test-daemon")
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(daemon, data, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `source "$1"; d=$2
start_daemon test "$d/pid" "$d/log" "$d/vigil-test-daemon" 30 >/dev/null
if pid_alive "$d/pid" vigil-test-daemon; then echo alive; else echo dead; fi
kill "$(<"$d/pid")"`
	for i := 0; i < 30; i++ {
		out, err := exec.Command("bash", "-c", script, "check", lib, dir).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "alive" {
			t.Fatalf("try %d: a daemon just started is %q (%v); want alive", i+1, strings.TrimSpace(string(out)), err)
		}
	}
}
