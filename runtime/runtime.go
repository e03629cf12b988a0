// Package runtime is the boundary between Vigil and whatever actually runs
// containers. Activities talk to a Runtime; the workflow never does.
package runtime

import (
	"context"
	"errors"
	"time"

	"github.com/vigil-run/vigil/replica"
)

// Status is the coarse lifecycle state of a container, as in the original
// supervisor (the in-memory Rust supervisor Vigil ports; see README.md),
// less the Pending and Stopping states no runtime reports.
type Status string

const (
	StatusInitializing Status = "Initializing"
	StatusRunning      Status = "Running"
	StatusExited       Status = "Exited"
	StatusFailed       Status = "Failed"
)

// FailedExitCode is the exit code a Failed container counts as.
const FailedExitCode = -1

// ContainerState is a container's state; its Exit is set for Exited and
// Failed (code -1, with a Reason).
type ContainerState struct {
	Status Status `json:"status"`
	Exit
	// Fence is the container's fence limit (ContainerSpec.Fence; 0: none),
	// known for an exited container: its exit may be the fence's.
	Fence time.Duration `json:"fence,omitempty"`
}

// Exited is the state of a container whose task ended with code at the
// given time; a code of 128+n reads as killed by signal n (see Classify).
func Exited(code int, at time.Time) ContainerState {
	return ContainerState{Status: StatusExited, Exit: Exit{ExitCode: code, ExitedAt: at}.Classify("")}
}

// Failed is the state of a container that could not run at all.
func Failed(reason string) ContainerState {
	return ContainerState{Status: StatusFailed, Exit: Exit{ExitCode: FailedExitCode, Reason: reason}.Classify("")}
}

// Running is the state of a container whose task is alive.
func Running() ContainerState { return ContainerState{Status: StatusRunning} }

// Done reports whether the container has left the running part of its life.
func (s ContainerState) Done() bool {
	return s.Status == StatusExited || s.Status == StatusFailed
}

// PullPolicy says when to fetch the image from a registry.
type PullPolicy string

const (
	PullAlways       PullPolicy = "always"
	PullIfNotPresent PullPolicy = "if_not_present"
	PullNever        PullPolicy = "never"
)

// EnvRefPrefix marks an env value that is a reference, "$E:NAME", which the
// node resolves from its own environment so that secrets never enter
// workflow history.
const EnvRefPrefix = "$E:"

// DefaultStopGrace is the time between SIGTERM and SIGKILL when a
// container is stopped and its deployment file sets no stop_grace.
const DefaultStopGrace = 10 * time.Second

// ContainerSpec is what is needed to create a container. Env values may be
// references of the form EnvRefPrefix+"NAME" (see EnvRefPrefix).
type ContainerSpec struct {
	Image      string            `json:"image"`
	PullPolicy PullPolicy        `json:"pull_policy,omitempty"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Args       []string          `json:"args,omitempty"`
	WorkDir    string            `json:"workdir,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	// Resources are the container's cgroup limits (none when nil).
	Resources *Resources `json:"resources,omitempty"`
	// Health holds the probes the node runs against the container.
	Health *Health `json:"health,omitempty"`
	// Serving (network, ports, volumes, init, stop signal) is in its own type.
	Serving
	// Security loosens or tightens the default confinement (nil: the
	// defaults, which containers created since v0.3.0 get).
	Security *Security `json:"security,omitempty"`
}

// StartInfo describes a task that Start found or made running.
type StartInfo struct {
	// StartedAt is when the running task was started (the runtime's clock where
	// it has one).
	StartedAt time.Time `json:"started_at"`
	// AlreadyRunning is true when Start found the task running and did nothing.
	AlreadyRunning bool   `json:"already_running,omitempty"`
	PID            uint32 `json:"pid,omitempty"`
	// Network is where the container can be reached (nil without a bridge network).
	Network *NetworkStatus `json:"network,omitempty"`
	// NotBefore is the runtime's time just before it created the running
	// task (or found it running): every exit of that task comes after it,
	// and every exit of a task Start removed (killed) comes before it.
	NotBefore time.Time `json:"not_before,omitzero"`
}

// Runtime runs containers on one node. Every method must be safe to call
// again after a failure or a crash of the caller (activities run at least once).
type Runtime interface {
	// Create creates the container if it does not exist (it is not an error
	// if it does, with the same spec). A container with another spec is
	// replaced when its task has ended; while the task runs, Create leaves
	// it and returns ErrSpecChanged.
	Create(ctx context.Context, id replica.ID, spec ContainerSpec) error
	// Start makes the container's task run. A running task is left alone
	// (AlreadyRunning); an exited task is deleted and a new one started.
	Start(ctx context.Context, id replica.ID) (StartInfo, error)
	// State reports the container's current state. A missing container is ErrContainerNotFound.
	State(ctx context.Context, id replica.ID) (ContainerState, error)
	// Wait blocks until the container's current task is no longer running and
	// returns its final state. If it has already exited it returns at once.
	Wait(ctx context.Context, id replica.ID) (ContainerState, error)
	// Stop sends SIGTERM, then SIGKILL after grace. Stopping a stopped container is a no-op.
	Stop(ctx context.Context, id replica.ID, grace time.Duration) error
	// Remove deletes the task, the container and its snapshot; the log is
	// kept. Missing is not an error.
	Remove(ctx context.Context, id replica.ID) error
	// RemoveVolumes deletes the replica's named volumes; only an explicit
	// request does (unsupervise --stop --volumes). Missing is not an error.
	RemoveVolumes(ctx context.Context, id replica.ID) error
	// CheckPorts tells whether the replica's container could publish the
	// host ports of spec (as Create gets it) now: nil, or a *PortInUse when
	// another container of the node publishes one or a process on the host
	// holds it. The container's own ports do not count. Create and Start
	// make the same check (and hold the ports until the rules are in place).
	CheckPorts(ctx context.Context, id replica.ID, spec ContainerSpec) error
	// Preflight checks, before anything is stopped for it, that the
	// replica's container could be made from spec on this node now, but for
	// its host ports (CheckPorts): the image is there (pulled if its policy
	// allows), each bind source and the init exist. It returns each Problem
	// found; an error is a failure to check (e.g. ErrUnavailable).
	Preflight(ctx context.Context, id replica.ID, spec ContainerSpec) ([]Problem, error)
	// Isolate marks the container as isolated (label vigil.isolated=true) and
	// keeps its exited task and logs for debugging.
	Isolate(ctx context.Context, id replica.ID) error
	// Logs returns up to the last tail lines of the container's captured
	// stdout and stderr (all of it if tail <= 0), across restarts, each run
	// after its marker line.
	Logs(ctx context.Context, id replica.ID, tail int) ([]byte, error)
	// Events follows the tasks of every container of this runtime: each
	// task start and exit and each OOM kill from the moment it returns, until ctx ends
	// or the stream breaks (e.g. the daemon restarts), when the error channel
	// yields one error and both channels close. Events missed meanwhile are
	// not replayed: call List after subscribing again to catch up.
	Events(ctx context.Context) (<-chan TaskEvent, <-chan error)
	// List reports every container of this runtime with its task's state.
	List(ctx context.Context) ([]ContainerInfo, error)
	// MarkReported records on the container that its task's exit at
	// exitedAt reached the replica (List reports it as ReportedAt), so a
	// later node watch does not report it again. A missing container is
	// ErrContainerNotFound.
	MarkReported(ctx context.Context, id replica.ID, exitedAt time.Time) error
}

// PullReporter is a Runtime that tells how far a pull in progress got.
type PullReporter interface {
	// PullProgress reports the bytes received so far by a pull of image
	// (as a spec names it) in progress, and whether one is.
	PullProgress(image string) (received int64, pulling bool)
}

// TaskEventKind says what happened to a task.
type TaskEventKind string

const (
	// TaskExited: the container's task (its init process) ended.
	TaskExited TaskEventKind = "exit"
	// TaskOOM: the kernel's OOM killer killed a process of the task; its exit follows.
	TaskOOM TaskEventKind = "oom"
	// TaskStarted: a new task of the container started.
	TaskStarted TaskEventKind = "start"
)

// TaskEvent is one thing that happened to a container's task. An Exited
// event holds the runtime's own exit code, time and PID (with the exit
// time, the PID tells the exit of a task from that of another task of the
// container); its cause is not worked out yet.
type TaskEvent struct {
	Kind TaskEventKind `json:"kind"`
	ID   replica.ID    `json:"id"`
	Exit
}

// ContainerInfo is one container of the runtime and the state of its task.
type ContainerInfo struct {
	ID    replica.ID     `json:"id"`
	State ContainerState `json:"state"`
	// StartedAt is when the runtime last started the container's task (zero if never).
	StartedAt time.Time `json:"started_at,omitempty"`
	// PID is the task's process ID (0 without a task).
	PID uint32 `json:"pid,omitempty"`
	// ReportedAt is the exit time MarkReported last recorded (zero if none):
	// an exit at exactly that time has reached its replica.
	ReportedAt time.Time `json:"reported_at,omitzero"`
}

// Typed errors. Activities treat ErrImageNotFound as permanent and retry the others.
var (
	ErrImageNotFound     = errors.New("image not found")
	ErrContainerNotFound = errors.New("container not found")
	ErrUnavailable       = errors.New("container runtime unavailable")
	// ErrTaskChanged: the container's task is not the one meant (it was
	// started again meanwhile).
	ErrTaskChanged = errors.New("the container's task was started again")
	// ErrImagePullUnauthorized: the registry refused the node's
	// credentials for the image (or the node has none for it).
	ErrImagePullUnauthorized = errors.New(replica.ErrTypeImagePullUnauthorized)
	// ErrImagePullStalled: a pull received nothing for the stall timeout.
	ErrImagePullStalled = errors.New(replica.ErrTypeImagePullStalled)
	// ErrSpecChanged: Create found the container's task running with
	// another spec. Create never stops a running task; its caller decides
	// (EnsureRunning stops it, so a fresh supervision runs the spec it was given).
	ErrSpecChanged = errors.New("the container's running task has another spec")
)
