package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// A part started is found by its pid file, a killed one is not, and a pid
// file naming a live process that started at another time (a recycled pid)
// is not mistaken for the part.
func TestPIDFiles(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"run", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := &Cluster{Options: Options{Dir: dir}}
	if err := c.spawn("sleeper", exec.Command("sleep", "60")); err != nil {
		t.Fatal(err)
	}
	pid := c.PID("sleeper")
	if pid == 0 {
		t.Fatal("a running part has no PID")
	}
	if err := c.Kill("sleeper"); err != nil {
		t.Fatal(err)
	}
	if c.PID("sleeper") != 0 {
		t.Fatal("a killed part still has a PID")
	}
	// Our own pid, with a start time that is not ours.
	self := strconv.Itoa(os.Getpid())
	if err := os.WriteFile(c.pidFile("recycled"), []byte(self+" 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c.PID("recycled") != 0 {
		t.Fatal("a recycled pid is taken for the part")
	}
	if err := c.StopPart("never-started"); err != nil {
		t.Fatalf("stopping a part that is not running: %v", err)
	}
}
