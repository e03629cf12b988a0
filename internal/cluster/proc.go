package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A pid file holds "<pid> <start time>": the start time (field 22 of
// /proc/<pid>/stat) tells a recycled pid from ours.

func (c *Cluster) pidFile(part string) string { return filepath.Join(c.Dir, "run", part+".pid") }

// LogFile is where a part's output goes.
func (c *Cluster) LogFile(part string) string { return filepath.Join(c.Dir, "logs", part+".log") }

// startTime reads a live, non-zombie process's start time.
func startTime(pid int) (string, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	// The command name (field 2) may hold spaces; fields after it are plain.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return "", false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return "", false
	}
	return f[19], true
}

// PID is the running part's process ID, or 0 when it is not running.
func (c *Cluster) PID(part string) int {
	data, err := os.ReadFile(c.pidFile(part))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return 0
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	if st, ok := startTime(pid); !ok || st != f[1] {
		return 0
	}
	return pid
}

func (c *Cluster) recordPID(part string, pid int) error {
	st, ok := startTime(pid)
	if !ok {
		return fmt.Errorf("%s exited at once; see %s", part, c.LogFile(part))
	}
	return os.WriteFile(c.pidFile(part), []byte(fmt.Sprintf("%d %s\n", pid, st)), 0o644)
}

// spawn starts cmd as the part, its output appended to the part's log.
// Detached processes get their own session and outlive the caller; the
// others die with it (a test never leaks a cluster).
func (c *Cluster) spawn(part string, cmd *exec.Cmd) error {
	logf, err := os.OpenFile(c.LogFile(part), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if c.Detach {
		cmd.SysProcAttr.Setsid = true
	} else {
		cmd.SysProcAttr.Setpgid = true
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", part, err)
	}
	// Reap it, so that a killed part is not left a zombie that looks alive.
	go func() { _ = cmd.Wait(); logf.Close() }()
	return c.recordPID(part, cmd.Process.Pid)
}

// Signal sends sig to a running part; not running is not an error.
func (c *Cluster) Signal(part string, sig syscall.Signal) error {
	pid := c.PID(part)
	if pid == 0 {
		return nil
	}
	return syscall.Kill(pid, sig)
}

// Kill SIGKILLs a part, as a crash would, and waits until it is gone.
func (c *Cluster) Kill(part string) error {
	return c.stopWith(part, syscall.SIGKILL, 10*time.Second)
}

// StopPart stops a part gracefully (SIGTERM; PostgreSQL: SIGINT, its fast
// shutdown), and SIGKILLs it after 20 s.
func (c *Cluster) StopPart(part string) error {
	sig := syscall.SIGTERM
	if part == PartPostgres {
		sig = syscall.SIGINT
	}
	if err := c.stopWith(part, sig, 20*time.Second); err == nil {
		return nil
	}
	return c.stopWith(part, syscall.SIGKILL, 10*time.Second)
}

var errStillRunning = errors.New("still running")

func (c *Cluster) stopWith(part string, sig syscall.Signal, grace time.Duration) error {
	pid := c.PID(part)
	if pid == 0 {
		_ = os.Remove(c.pidFile(part))
		return nil
	}
	_ = syscall.Kill(pid, sig)
	deadline := time.Now().Add(grace)
	for c.PID(part) != 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d): %w after %s", part, pid, errStillRunning, grace)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = os.Remove(c.pidFile(part))
	c.logf("%s: stopped (pid %d, %s)", part, pid, sig)
	return nil
}

// waitReady polls ready until it succeeds, failing early when the part died.
func (c *Cluster) waitReady(ctx context.Context, part string, limit time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		if c.PID(part) == 0 {
			return fmt.Errorf("%s exited during startup; its log %s ends:\n%s", part, c.LogFile(part), c.LogTail(part, 15))
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(pctx)
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s (%v); its log %s ends:\n%s", part, limit, last, c.LogFile(part), c.LogTail(part, 15))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// LogTail is the last n lines of a part's log.
func (c *Cluster) LogTail(part string, n int) string {
	data, _ := os.ReadFile(c.LogFile(part))
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
