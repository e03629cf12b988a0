package runtime

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// ExitReason says why a container left Running (the status's
// last_exit_reason and each event's reason).
type ExitReason string

const (
	// ExitExited: the main process exited on its own with an exit code.
	ExitExited ExitReason = "Exited"
	// ExitSignaled: a signal killed the main process (Signal names it).
	ExitSignaled ExitReason = "Signaled"
	// ExitOOMKilled: the kernel's OOM killer killed it at its memory limit,
	// as containerd's /tasks/oom event for the task reported.
	ExitOOMKilled ExitReason = "OOMKilled"
	// ExitUnhealthy: Vigil stopped it after its liveness probe failed.
	ExitUnhealthy ExitReason = "Unhealthy"
	// ExitFailed: the container could not run at all (its task failed to
	// start, or it was deleted behind Vigil's back); the code is -1.
	ExitFailed ExitReason = "Failed"
)

// signalExitBase: containerd's shim reports a task killed by signal n as
// exit status 128+n (as shells do). containerd's API carries nothing else,
// so an exit status 129..159 naming a known signal is read as that signal: a
// process that calls exit(137) itself is reported as Signaled SIGKILL. The
// exit code is kept as well, so rules on exit_codes still see 137.
const signalExitBase = 128

// maxSignal bounds the standard signals (1..31) that have names.
const maxSignal = 32

// ExitCause classifies an exit status: Signaled with the signal's name for
// 128+n where n is a known signal, else Exited.
func ExitCause(code int) (ExitReason, string) {
	if code > signalExitBase && code < signalExitBase+maxSignal {
		if name := unix.SignalName(unix.Signal(code - signalExitBase)); name != "" {
			return ExitSignaled, name
		}
	}
	return ExitExited, ""
}

// ParseSignal returns the canonical name ("SIGSEGV") of a signal written as
// SIGSEGV, SEGV or sigsegv, or an error naming the valid form.
func ParseSignal(s string) (string, error) {
	name := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if n := unix.SignalNum(name); n == 0 || n >= maxSignal {
		return "", fmt.Errorf("%q is not a signal name; use a name such as SIGSEGV, SIGKILL or SIGTERM", s)
	}
	return name, nil
}
