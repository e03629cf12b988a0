// Command vigil-fence runs a movable replica's command inside its container
// and ends the container once its node's lease is too old: the node may
// have lost the server (a partition), or its worker died, and the replica
// is about to be started on another node. It needs neither the worker nor
// containerd: it reads the lease file the worker writes after each renewal
// (package lease), mounted read-only, on the host's boot clock.
//
// Usage (the worker's runtime writes this command line):
//
//	vigil-fence --lease-dir DIR --after DURATION -- COMMAND [ARG...]
//
// It is the container's PID 1 (or tini's child with init: true): it
// forwards every signal to the command, reaps orphans when it is PID 1, and
// exits with the command's status. When the lease is older than DURATION,
// or missing, it kills the command's process group and exits with
// lease.FencedExit; as PID 1 its exit kills everything left in the container.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/vigil-run/vigil/lease"
)

// poll is how often the lease is read: a fraction of the fence margin
// (lease.MinMargin) it must fit in.
const poll = 250 * time.Millisecond

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	flags := flag.NewFlagSet("vigil-fence", flag.ContinueOnError)
	dir := flags.String("lease-dir", "", "directory of the node's lease file")
	after := flags.Duration("after", 0, "lease age at which the container ends")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	cmd := flags.Args()
	if *dir == "" || *after <= 0 || len(cmd) == 0 {
		fmt.Fprintln(os.Stderr, "vigil-fence: usage: vigil-fence --lease-dir DIR --after DURATION -- COMMAND [ARG...]")
		return 2
	}
	if why := stale(*dir, *after); why != "" {
		fmt.Fprintf(os.Stderr, "vigil-fence: not starting %s: %s\n", cmd[0], why)
		return lease.FencedExit
	}
	// Every signal but the ones Go's runtime and the reaping use is for
	// the command; subscribed before it starts, so none is lost.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)
	child, err := os.StartProcess(lookPath(cmd[0]), cmd, &os.ProcAttr{
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Env:   os.Environ(),
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "vigil-fence: %v\n", err)
		if errors.Is(err, fs.ErrNotExist) {
			return 127
		}
		return 126
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case s := <-sigs:
			switch s {
			case syscall.SIGCHLD:
				if status, done := reap(child.Pid); done {
					return status
				}
			case syscall.SIGURG: // Go's own preemption
			default:
				_ = child.Signal(s)
			}
		case <-tick.C:
			if why := stale(*dir, *after); why != "" {
				fmt.Fprintf(os.Stderr, "vigil-fence: ending the container: %s\n", why)
				_ = syscall.Kill(-child.Pid, syscall.SIGKILL)
				_ = child.Kill()
				return lease.FencedExit
			}
			// A SIGCHLD merged with another is caught here.
			if status, done := reap(child.Pid); done {
				return status
			}
		}
	}
}

// stale says why the lease in dir is too old, or "".
func stale(dir string, after time.Duration) string {
	l, err := lease.Read(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "the node has no lease file (" + dir + ")"
		}
		return err.Error()
	}
	if age := l.Age(); age >= after {
		return fmt.Sprintf("the node's lease is %s old, last renewed at %s (limit %s): this replica may be running elsewhere",
			age.Round(time.Millisecond), l.At.Format(time.RFC3339), after)
	}
	return ""
}

// reap collects every exited child (as PID 1 that is any orphan too) and
// returns the command's exit status once it has exited.
func reap(pid int) (status int, done bool) {
	for {
		var ws syscall.WaitStatus
		p, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err != nil || p <= 0 {
			return 0, false
		}
		if p != pid {
			continue
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal()), true
		}
		return ws.ExitStatus(), true
	}
}

// lookPath finds name on PATH as a shell would, or returns it as is.
func lookPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return name
}
