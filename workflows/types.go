package workflows

import (
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Search attributes upserted on every state change (all Keyword).
var (
	SearchAttrState      = temporal.NewSearchAttributeKeyKeyword(replica.SearchAttrState)
	SearchAttrService    = temporal.NewSearchAttributeKeyKeyword(replica.SearchAttrService)
	SearchAttrDeployment = temporal.NewSearchAttributeKeyKeyword(replica.SearchAttrDeployment)
	SearchAttrNode       = temporal.NewSearchAttributeKeyKeyword(replica.SearchAttrNode)
)

// State is a supervised replica's state, as in the original supervisor (the
// in-memory Rust supervisor Vigil ports; see README.md). What moves it:
//
//	           first start works
//	Pending ─────────────────────────► Running ───── exit: complete ─────► Completed
//	                                    │   ▲
//	            exit: restart;          │   │ the start works (a failed
//	            operator restart        ▼   │ attempt is retried)
//	                                  Restarting ◄─────────────────────────┐
//	                                    ▲                                  │
//	          exit: back off            │ backoff over;                    │ release;
//	Running ───────► CrashLoopBackOff ──┘ operator restart                 │ new generation
//	                                                                       │
//	Running ─── exit: isolate or shut down; service shut down ───► Isolated / Shutdown
//
// A new generation (reconfigure) goes through Restarting from any state but
// Completed; unsupervise ends supervision from any state (Unsupervised).
type State string

const (
	// StatePending: supervised, but the container has not run yet (its first
	// start has not succeeded, e.g. no worker serves the node).
	StatePending          State = "Pending"
	StateRunning          State = "Running"
	StateRestarting       State = "Restarting"
	StateCrashLoopBackOff State = "CrashLoopBackOff"
	StateIsolated         State = "Isolated"
	StateShutdown         State = "Shutdown"
	StateCompleted        State = "Completed"
	// StateUnsupervised: supervision ended by an operator; the run is closed.
	StateUnsupervised State = "Unsupervised"
	// StateNodeLost: a pinned replica (node:) whose node's lease is older
	// than its lost_after; it is never moved, and is Running again once
	// the lease comes back (since v0.3.0).
	StateNodeLost State = "NodeLost"
)

// NodeState is what the replica last saw of its node's worker.
type NodeState string

const (
	// NodeReady: a worker on the node took the replica's last node activity.
	NodeReady NodeState = "Ready"
	// NodeNoWorker: no worker on the node took one within
	// NodeScheduleToStart.
	NodeNoWorker NodeState = "NoWorker"
	// NodeLost: the node's lease is older than the replica's lost_after.
	NodeLost NodeState = "Lost"
)

// Watched reports whether the container is watched for exits in this state.
// Only Running is: during a crash-loop backoff the container is down by
// design, and watching it then is what made the Rust original restart it every
// poll interval.
func (s State) Watched() bool { return s == StateRunning }

// AllStates lists the states in a stable order (for counts and validation).
var AllStates = []State{StatePending, StateRunning, StateRestarting, StateCrashLoopBackOff, StateIsolated, StateShutdown, StateCompleted, StateUnsupervised, StateNodeLost}

// ParseState finds the state named s, in any case ("crashloopbackoff").
func ParseState(s string) (State, bool) {
	for _, st := range AllStates {
		if strings.EqualFold(string(st), s) {
			return st, true
		}
	}
	return "", false
}

// StateNames lists the states for help and error messages.
func StateNames() string {
	names := make([]string, len(AllStates))
	for i, s := range AllStates {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// EventType names a supervision event, as in the original supervisor (the
// Rust supervisor Vigil ports; see README.md).
type EventType string

const (
	// EventContainerRestarted: the container was started again after a
	// crash (counted as a restart).
	EventContainerRestarted EventType = "ContainerRestarted"
	// EventCrashLoopBackOff: too many crashes in the window; the next start
	// waits for the backoff.
	EventCrashLoopBackOff EventType = "CrashLoopBackOff"
	// EventContainerIsolated: the panic action kept the crashed container
	// for debugging; it waits for release.
	EventContainerIsolated EventType = "ContainerIsolated"
	// EventServiceShutdown: the panic action (or a shutdown rule) left the
	// service down.
	EventServiceShutdown EventType = "ServiceShutdown"
	// EventContainerCompleted: the container exited 0; supervision ended.
	EventContainerCompleted EventType = "ContainerCompleted"
	// EventContainerReplaced: a new container was made from a new generation
	// of the deployment (not a crash; not counted as a restart).
	EventContainerReplaced EventType = "ContainerReplaced"
	// EventOperatorRestart, EventReleased, EventUnsupervised: an operator's
	// request, with its request ID and what it did.
	EventOperatorRestart EventType = "OperatorRestart"
	EventReleased        EventType = "Released"
	EventUnsupervised    EventType = "Unsupervised"
	// EventRescheduled: the replica moved to another node (From, To), its
	// node lost or drained (Reason NodeLost or Drained); not a crash.
	EventRescheduled EventType = "Rescheduled"
	// EventFenced: the node's fence ended the container while the node's
	// lease lapsed, and the lease came back before the replica moved: it
	// restarts in place; not a crash (since v0.3.0).
	EventFenced EventType = "Fenced"
)

// Why a replica moved (EventRescheduled's reason).
const (
	ReasonNodeLost = "NodeLost"
	ReasonDrained  = "Drained"
)

// Event is one supervision decision, with the time it happened.
type Event struct {
	Type         EventType `json:"type"`
	Time         time.Time `json:"time"`
	ExitCode     *int      `json:"exit_code"`
	RestartCount int       `json:"restart_count"`
	// Reason is the cause of the exit the event is about (Exited, Signaled,
	// OOMKilled, Unhealthy, Failed, Lost); null when the run's release
	// recorded no reasons (versions.go).
	Reason *string `json:"reason"`
	// EndedBackoff: an OperatorRestart that ended a crash-loop backoff early.
	EndedBackoff bool `json:"ended_backoff,omitempty"`
	// RequestID is the operator request's ID (operator events only).
	RequestID string `json:"request_id,omitempty"`
	// Note says what an operator request did, e.g. whether unsupervise
	// stopped the container.
	Note string `json:"note,omitempty"`
	// From and To are the nodes of a move (Rescheduled).
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// SupervisionInput starts (or continues) the supervision of one replica.
type SupervisionInput struct {
	ID replica.ID `json:"id"`
	// ReplicaConfig is what the deployment file decides (its JSON keys sit
	// beside id, as they always have).
	ReplicaConfig
	// ContinueAsNewAfter is the number of exits one run handles before it
	// continues as new (default DefaultContinueAsNewAfter).
	ContinueAsNewAfter int `json:"continue_as_new_after,omitempty"`
	// ContinueAsNewEvery is the longest one run lasts, in workflow time,
	// before it continues as new (default DefaultContinueAsNewEvery; at least
	// MinContinueAsNewEvery), where the run's release has that timer. Since
	// v0.3.0 a run lasts more than half of it, until the replica's own phase
	// (continueAsNewDelay), so a fleet's runs do not all end together.
	ContinueAsNewEvery time.Duration `json:"continue_as_new_every,omitempty"`
	// Generation is the deployment generation the spec comes from (0 for
	// replicas supervised before deployments had generations).
	Generation int `json:"generation,omitempty"`
	// Carry is the state carried across continue-as-new; nil on first start.
	Carry *Carry `json:"carry,omitempty"`
}

// Carry is everything a continued run needs to pick up where the last one stood.
type Carry struct {
	State           State          `json:"state"`
	History         policy.History `json:"history"`
	TotalRestarts   int            `json:"total_restarts"`
	LastExitCode    *int           `json:"last_exit_code"`
	LastExitAt      time.Time      `json:"last_exit_at"`
	SupervisedSince time.Time      `json:"supervised_since"`
	// NextRestartAt is the deadline of a backoff in progress (zero if none).
	NextRestartAt time.Time `json:"next_restart_at"`
	Events        []Event   `json:"events"`
	Runs          int       `json:"runs"`
	// Generation is the deployment generation the container was made from.
	Generation int `json:"generation,omitempty"`
	// LastExitReason and LastExitSignal explain the last exit (empty if none).
	LastExitReason runtime.ExitReason `json:"last_exit_reason,omitempty"`
	LastExitSignal string             `json:"last_exit_signal,omitempty"`
	// Health is what the probes last said (empty without probes) about the
	// task started at TaskStartedAt (the runtime's start time).
	Health        runtime.HealthStatus `json:"health,omitempty"`
	TaskStartedAt time.Time            `json:"task_started_at,omitzero"`
	// HealthDetail is what the last failed probe said (since v0.3.0).
	HealthDetail string `json:"health_detail,omitempty"`
	// LastRule is the rule that decided the last exit (nil: none did), and
	// ShutdownBy the replica whose exit shut the service down (while
	// Shutdown); both since v0.3.0.
	LastRule   *RuleRef `json:"last_rule,omitempty"`
	ShutdownBy string   `json:"shutdown_by,omitempty"`
	// Network is where the container was reachable when last started
	// (bridge networking; nil otherwise).
	Network *runtime.NetworkStatus `json:"network,omitempty"`
	// WatchAfter is the node's time just before the current task was
	// started: a reported exit at or before it is of an older task.
	WatchAfter time.Time `json:"watch_after,omitzero"`
	// TaskPID is the current task's process ID (0 if unknown).
	TaskPID uint32 `json:"task_pid,omitempty"`
	// PendingExits are exits reported to an earlier run and not yet acted on.
	PendingExits []activities.ExitReport `json:"pending_exits,omitempty"`
	// Replaced is the verdict of the last replacement (since v0.3.0), so
	// that the same request, retried to a later run, gets the same answer.
	Replaced *ReplaceVerdict `json:"replaced,omitempty"`
	// NodeState is what the last node activity said of the node's worker
	// (empty until one ended); NodeSince is when it last changed.
	NodeState NodeState `json:"node_state,omitempty"`
	NodeSince time.Time `json:"node_since,omitzero"`
	// NodeLapsedAt is the last renewal of the node's lease before it
	// lapsed (zero: not lapsed): the replica moves, or shows NodeLost,
	// once the lease is its lost_after old (since v0.3.0).
	NodeLapsedAt time.Time `json:"node_lapsed_at,omitzero"`
}

// StateView is the answer to the "state" query and the object `vigil status --json` prints.
type StateView struct {
	ID              string   `json:"id"`
	Deployment      string   `json:"deployment"`
	Service         string   `json:"service"`
	Replica         int      `json:"replica"`
	Node            string   `json:"node"`
	State           State    `json:"state"`
	PanicAction     string   `json:"panic_action"`
	TotalRestarts   int      `json:"total_restarts"`
	RestartTimes    []string `json:"restart_times"`
	LastExitCode    *int     `json:"last_exit_code"`
	SupervisedSince string   `json:"supervised_since"`
	NextRestartAt   *string  `json:"next_restart_at"`
	Events          []Event  `json:"events"`
	// Generation is the deployment generation the container was made from.
	Generation int `json:"generation"`
	// LastExitReason is Exited, Signaled, OOMKilled, Unhealthy, Failed, Lost or Fenced;
	// LastExitSignal names the signal that killed it. Null when none.
	LastExitReason *string `json:"last_exit_reason"`
	LastExitSignal *string `json:"last_exit_signal"`
	// Health is starting, healthy or unhealthy; present only when the
	// service has a probe.
	Health *string `json:"health,omitempty"`
	// HealthDetail is what the last failed probe said: the HTTP status, the
	// exec's exit code and first line of output, or the TCP error; null
	// when none failed.
	HealthDetail *string `json:"health_detail"`
	// LastRule is the rule of the file that decided the last exit: its
	// index in on_panic.rules and its text; null when none did (the panic
	// action, or exit 0, decided).
	LastRule *RuleRef `json:"last_rule"`
	// ShutdownBy is the replica whose exit shut the service down (state
	// Shutdown); null otherwise.
	ShutdownBy *string `json:"shutdown_by"`
	// IP and Ports: where the container can be reached (bridge networking).
	IP    string                `json:"ip,omitempty"`
	Ports []runtime.PortMapping `json:"ports,omitempty"`
	// NodeState is Ready, NoWorker or Lost (see NodeState), NodeSince when
	// it last changed; both null until a node activity ended.
	NodeState *string `json:"node_state"`
	NodeSince *string `json:"node_since"`
	// RunningSince is when the running container's task started (the
	// runtime's time); null unless Running. Rollout status counts a replica
	// available once it has run min_ready.
	RunningSince *string `json:"running_since"`
	// Security is the confinement the replica's container is created with,
	// every default filled in (a container created before v0.3.0 keeps the
	// confinement it was created with until it is replaced).
	Security *runtime.EffectiveSecurity `json:"security,omitempty"`
}

// RuleRef names one rule of a service's on_panic.rules.
type RuleRef struct {
	Index int    `json:"index"`
	Text  string `json:"text"`
}

// HealthReport is the "health" signal: the node's probes changed their
// verdict on the replica's container. Sent only on a change, so a healthy
// container adds no history.
type HealthReport struct {
	Status runtime.HealthStatus `json:"status"`
	// Detail is what the failed probe said (an unhealthy verdict; empty
	// from workers before v0.3.0).
	Detail string `json:"detail,omitempty"`
	// StartedAt identifies the container's task the verdict is about; a
	// report about an earlier task is ignored.
	StartedAt time.Time `json:"started_at,omitzero"`
}

// Every operator request carries an ID (a UUID the CLI mints), which is also
// its update ID: a retry with the same ID is the same request (empty from
// clients that mint none).

// ReleaseRequest is the "release" update's argument.
type ReleaseRequest struct {
	RequestID string `json:"request_id,omitempty"`
}

// RestartRequest is the "restart" update's argument.
type RestartRequest struct {
	Reason    string `json:"reason,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// RolloverRequest is the "rollover" update's argument.
type RolloverRequest struct {
	RequestID string `json:"request_id,omitempty"`
}

// UnsuperviseRequest is the "unsupervise" update's argument.
type UnsuperviseRequest struct {
	// Stop also stops and removes the container (its log is kept);
	// otherwise it is left as it is.
	Stop      bool   `json:"stop,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// Volumes (with Stop) also deletes the replica's named volumes, which
	// otherwise outlive supervision.
	Volumes bool `json:"volumes,omitempty"`
}

// UpdateResult is what release, restart and unsupervise return (nothing,
// from runs of a release that returned nothing: versions.go).
type UpdateResult struct {
	RequestID string `json:"request_id,omitempty"`
	// Note says what was done, and what was not (e.g. a container that could
	// not be stopped because no worker serves its node).
	Note string `json:"note,omitempty"`
	// NotStopped: unsupervise --stop could not stop the container (since
	// v0.3.0); the next worker on its node does (MemoStopPending).
	NotStopped bool `json:"not_stopped,omitempty"`
}

// ReconfigureRequest is the "reconfigure" update's argument: the replica's
// config from deployment generation Generation.
type ReconfigureRequest struct {
	Generation int           `json:"generation"`
	Config     ReplicaConfig `json:"config"`
	// Replace makes a new container (stop with grace, remove, create, start)
	// and answers once it has run MinReady without exiting. Otherwise only
	// the policy changes, in place, keeping the crash window.
	Replace  bool          `json:"replace,omitempty"`
	MinReady time.Duration `json:"min_ready,omitempty"`
}

// ReplaceVerdict is how the replacement to one generation and config went.
type ReplaceVerdict struct {
	Generation int    `json:"generation"`
	Digest     string `json:"digest"`
	Ready      bool   `json:"ready"`
	Reason     string `json:"reason,omitempty"`
}

// ReconfigureResult says how a replacement went.
type ReconfigureResult struct {
	// Ready: the new container ran MinReady without exiting.
	Ready bool `json:"ready"`
	// Reason says why not.
	Reason string `json:"reason,omitempty"`
}

// ShutdownRequest is the "shutdown" update's argument.
type ShutdownRequest struct {
	// Cause is the replica whose crash shut the service down.
	Cause string `json:"cause,omitempty"`
	// By is that replica's ID (deployment/service-rep-n; since v0.3.0).
	By string `json:"by,omitempty"`
}

// ServiceShutdownSignal tells the deployment that a replica's panic policy
// shut its service down.
type ServiceShutdownSignal struct {
	Service  string `json:"service"`
	Replica  int    `json:"replica"`
	ExitCode int    `json:"exit_code"`
}

// FetchLogsInput asks the node that runs a replica for its captured output.
type FetchLogsInput struct {
	ID   replica.ID `json:"id"`
	Node string     `json:"node"`
	Tail int        `json:"tail"`
}
