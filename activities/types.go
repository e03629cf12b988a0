package activities

import (
	"time"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// EnsureRunningInput asks for the container to exist and have a running task.
type EnsureRunningInput struct {
	ID   replica.ID            `json:"id"`
	Spec runtime.ContainerSpec `json:"spec"`
	// After is the exit being answered (or the time supervision decided to
	// start). A task that exited after it was started by an earlier attempt of
	// this same call: it is not started again, so a retried activity never
	// doubles a restart; the result reports that exit (ExitedSince).
	After time.Time `json:"after"`
	// Grace is the stop grace of a running task of another spec, which the
	// start replaces (0: runtime.DefaultStopGrace).
	Grace time.Duration `json:"grace,omitempty"`
}

// EnsureRunningResult says what EnsureRunning found or did.
type EnsureRunningResult struct {
	StartedAt      time.Time `json:"started_at"`
	AlreadyRunning bool      `json:"already_running,omitempty"`
	// ExitedSince is true when a task started by an earlier attempt has
	// already exited; nothing was started.
	ExitedSince bool `json:"exited_since,omitempty"`
	// StartError is set (with ExitedSince and exit code -1) when the task
	// could not start at all, e.g. its executable is missing: the workflow
	// acts on it as an exit.
	StartError string `json:"start_error,omitempty"`
	// Network is where the running container can be reached (bridge
	// networking only): its address and published ports.
	Network *runtime.NetworkStatus `json:"network,omitempty"`
	// NotBefore is the node's time when the call began: every exit of the
	// task it leaves running comes later, so an earlier exit reported by the
	// node watch is of an older task.
	NotBefore time.Time `json:"not_before,omitempty"`
	// PID is the running task's process ID.
	PID uint32 `json:"pid,omitempty"`
	// ExitCode and ExitedAt are the exit found with ExitedSince (-1 and the
	// time of the failure with StartError); read them as Exit.
	ExitCode int       `json:"exit_code,omitempty"`
	ExitedAt time.Time `json:"exited_at,omitempty"`
}

// Exit is the exit found with ExitedSince. Its cause is left unset, as the
// workflow has always recorded it (status shows it as Exited).
func (r EnsureRunningResult) Exit() runtime.Exit {
	return runtime.Exit{ExitCode: r.ExitCode, ExitedAt: r.ExitedAt, Reason: r.StartError}
}

// WaitForExitInput asks to block until the container leaves Running.
type WaitForExitInput struct {
	ID replica.ID `json:"id"`
	// PollInterval is the fallback state poll, in case an exit event is missed.
	PollInterval time.Duration `json:"poll_interval"`
}

// StopInput asks to stop the container: SIGTERM, then SIGKILL after Grace.
type StopInput struct {
	ID    replica.ID    `json:"id"`
	Grace time.Duration `json:"grace"`
	// Remove also deletes the container and its snapshot.
	Remove bool `json:"remove,omitempty"`
	// RemoveVolumes (with Remove) also deletes the replica's named volumes.
	RemoveVolumes bool `json:"remove_volumes,omitempty"`
}

// IsolateInput asks to mark a crashed container isolated and to call the hook.
type IsolateInput struct {
	ID       replica.ID `json:"id"`
	ExitCode int        `json:"exit_code"`
	// Webhook, if set, receives a JSON POST describing the isolation. A failed
	// call is logged and does not fail the activity: isolation must not hinge
	// on a third party.
	Webhook string `json:"webhook,omitempty"`
}

// LogsInput asks for the tail of a container's captured output.
type LogsInput struct {
	ID   replica.ID `json:"id"`
	Tail int        `json:"tail"`
}

// LogsResult is captured stdout and stderr, interleaved as written.
type LogsResult struct {
	Output string `json:"output"`
}

// PreflightInput asks a node whether it can make these replicas' containers.
type PreflightInput struct {
	Replicas []PreflightReplica `json:"replicas"`
}

// PreflightReplica is one replica and the spec of its service (the node
// works out the replica's host ports, runtime.ReplicaPorts).
type PreflightReplica struct {
	ID   replica.ID            `json:"id"`
	Spec runtime.ContainerSpec `json:"spec"`
}

// PreflightResult lists what the node cannot do, by replica (none: all clear).
type PreflightResult struct {
	Problems []PreflightProblem `json:"problems,omitempty"`
}

// PreflightProblem is one problem of one replica's spec.
type PreflightProblem struct {
	ID replica.ID `json:"id"`
	runtime.Problem
}
