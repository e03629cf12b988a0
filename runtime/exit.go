package runtime

import (
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Exit is how a container's task left Running: the one record of an exit,
// used by the runtime, the node watch, the workflow and the policy. It is
// also the JSON of the WaitForExit and Stop results and, with the replica's
// ID, of the exit signal: its keys never change (a new one is added with
// omitempty, so that what was sent before reads the same).
type Exit struct {
	ExitCode int       `json:"exit_code"`
	ExitedAt time.Time `json:"exited_at"`
	// Reason says why the container failed rather than exited (code -1),
	// e.g. it was deleted behind Vigil's back.
	Reason string `json:"reason,omitempty"`
	// Cause is why it exited (see Classify); Signal names the signal that
	// killed it, if one did.
	Cause  ExitReason `json:"cause,omitempty"`
	Signal string     `json:"signal,omitempty"`
	// StartedAt is when the task that exited had started (zero if unknown).
	StartedAt time.Time `json:"started_at,omitzero"`
	// PID is the exited task's process ID (0 if unknown).
	PID uint32 `json:"pid,omitempty"`
	// ExitedBeforeStop (a Stop result only): the task had exited by itself
	// before the stop, and this is that exit, a crash to decide on, not
	// the stop's.
	ExitedBeforeStop bool `json:"exited_before_stop,omitempty"`
}

// Classify works out the exit's Cause and Signal, the one place they are
// decided: marked is what was recorded of the task's end beyond its code
// (ExitOOMKilled, ExitUnhealthy; "" if nothing), which wins; else a code of
// -1 is Failed, and 128+n is Signaled by n (see exitCause).
func (e Exit) Classify(marked ExitReason) Exit {
	cause, sig := exitCause(e.ExitCode)
	switch {
	case marked != "":
		e.Cause, e.Signal = marked, sig
	case e.ExitCode == FailedExitCode:
		e.Cause, e.Signal = ExitFailed, ""
	default:
		e.Cause, e.Signal = cause, sig
	}
	return e
}

// Label is the exit's cause as status shows it: Exited for an exit
// recorded without one.
func (e Exit) Label() ExitReason {
	if e.Cause == "" {
		return ExitExited
	}
	return e.Cause
}

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
	// start); the code is -1.
	ExitFailed ExitReason = "Failed"
	// ExitLost: the container or its task vanished behind Vigil's back
	// (removed by hand, or lost with the node's containerd state, e.g. a
	// reboot); the node's reconciliation finds it; the code is -1.
	ExitLost ExitReason = "Lost"
	// ExitFenced: the node's fence ended it because the node's lease was
	// too old (the node lost the server, or its worker died); a movable
	// replica's, since v0.3.0.
	ExitFenced ExitReason = "Fenced"
)

// signalExitBase: containerd's shim reports a task killed by signal n as
// exit status 128+n (as shells do). containerd's API carries nothing else,
// so an exit status 129..159 naming a known signal is read as that signal: a
// process that calls exit(137) itself is reported as Signaled SIGKILL. The
// exit code is kept as well, so rules on exit_codes still see 137.
const signalExitBase = 128

// maxSignal bounds the standard signals (1..31) that have names.
const maxSignal = 32

// exitCause reads an exit status: Signaled with the signal's name for
// 128+n where n is a known signal, else Exited.
func exitCause(code int) (ExitReason, string) {
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
