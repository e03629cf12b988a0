// Package policy decides what to do when a supervised container exits.
//
// Decide is a pure function of (history, exit, now): no Temporal, no
// containerd, no clock. The workflow feeds it and carries out the answer.
package policy

import (
	"fmt"
	"time"
)

// Action is what a service asks for when one of its containers crashes
// (the deployment file's errors.on_panic.action).
type Action string

const (
	ActionRestart  Action = "restart"
	ActionShutdown Action = "shutdown"
	ActionIsolate  Action = "isolate"
)

// Defaults of the original supervisor.
const (
	DefaultMaxRestarts   = 5
	DefaultRestartWindow = 300 * time.Second
	DefaultPollInterval  = 5 * time.Second
	DefaultBackoff       = 30 * time.Second
)

// Policy is one service's restart policy.
type Policy struct {
	Action        Action        `json:"action"`
	MaxRestarts   int           `json:"max_restarts"`
	RestartWindow time.Duration `json:"restart_window"`
	Backoff       time.Duration `json:"backoff"`
	PollInterval  time.Duration `json:"poll_interval"`
}

// Default is the original supervisor's policy.
func Default() Policy {
	return Policy{
		Action:        ActionRestart,
		MaxRestarts:   DefaultMaxRestarts,
		RestartWindow: DefaultRestartWindow,
		Backoff:       DefaultBackoff,
		PollInterval:  DefaultPollInterval,
	}
}

// WithDefaults fills the zero fields of p with the defaults.
func (p Policy) WithDefaults() Policy {
	d := Default()
	if p.Action == "" {
		p.Action = d.Action
	}
	if p.MaxRestarts == 0 {
		p.MaxRestarts = d.MaxRestarts
	}
	if p.RestartWindow == 0 {
		p.RestartWindow = d.RestartWindow
	}
	if p.Backoff == 0 {
		p.Backoff = d.Backoff
	}
	if p.PollInterval == 0 {
		p.PollInterval = d.PollInterval
	}
	return p
}

// Validate reports the first field that is out of range, naming it and the fix.
func (p Policy) Validate() error {
	switch p.Action {
	case ActionRestart, ActionShutdown, ActionIsolate:
	default:
		return fmt.Errorf("action: %q is not one of restart, shutdown, isolate", p.Action)
	}
	if p.MaxRestarts < 0 {
		return fmt.Errorf("max_restarts: %d is negative; use 0 or more", p.MaxRestarts)
	}
	if p.RestartWindow <= 0 {
		return fmt.Errorf("restart_window: %s must be positive, e.g. 300s", p.RestartWindow)
	}
	if p.Backoff <= 0 {
		return fmt.Errorf("backoff: %s must be positive, e.g. 30s", p.Backoff)
	}
	if p.PollInterval <= 0 {
		return fmt.Errorf("poll_interval: %s must be positive, e.g. 5s", p.PollInterval)
	}
	return nil
}

// History is what the policy remembers between exits: the times of the
// crashes counted in the sliding window, oldest first.
type History struct {
	RestartTimes []time.Time `json:"restart_times"`
}

// Exit is how a container left Running. A Failed container counts as code -1.
type Exit struct {
	Code   int       `json:"code"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// Outcome is what the supervisor does next.
type Outcome string

const (
	// Complete: the container finished its work; supervision ends.
	Complete Outcome = "complete"
	// Restart: start the container again now.
	Restart Outcome = "restart"
	// BackOff: crash loop; start again at Decision.RestartAt and not before.
	BackOff Outcome = "backoff"
	// Shutdown: leave the container down (panic action shutdown).
	Shutdown Outcome = "shutdown"
	// Isolate: keep the crashed container for debugging (panic action isolate).
	Isolate Outcome = "isolate"
)

// Reasons, named so that history and logs say why.
const (
	ReasonExitedSuccessfully = "exited with code 0"
	ReasonWithinPolicy       = "crashed; restart within policy"
	ReasonCrashLoop          = "crashed more than max_restarts times within restart_window; crash-loop backoff"
	ReasonShutdownPolicy     = "crashed; panic action is shutdown"
	ReasonIsolatePolicy      = "crashed; panic action is isolate"
)

// Decision is the policy's answer, including the history to carry forward.
type Decision struct {
	Outcome Outcome
	Reason  string
	// RestartAt is the earliest time to start again (BackOff only).
	RestartAt time.Time
	// History is the history after this exit.
	History History
}

// Decide returns what to do about exit, given the history so far and the current time.
//
// A crash is counted in the window only when the panic action is restart:
// the window exists to detect restart loops. More than MaxRestarts crashes
// within RestartWindow (counting this one) is a crash loop.
func (p Policy) Decide(h History, exit Exit, now time.Time) Decision {
	kept := pruned(h.RestartTimes, now, p.RestartWindow)
	if exit.Code == 0 {
		return Decision{Outcome: Complete, Reason: ReasonExitedSuccessfully, History: History{RestartTimes: kept}}
	}
	switch p.Action {
	case ActionShutdown:
		return Decision{Outcome: Shutdown, Reason: ReasonShutdownPolicy, History: History{RestartTimes: kept}}
	case ActionIsolate:
		return Decision{Outcome: Isolate, Reason: ReasonIsolatePolicy, History: History{RestartTimes: kept}}
	}
	kept = append(kept, now)
	next := History{RestartTimes: kept}
	if len(kept) > p.MaxRestarts {
		return Decision{Outcome: BackOff, Reason: ReasonCrashLoop, RestartAt: now.Add(p.Backoff), History: next}
	}
	return Decision{Outcome: Restart, Reason: ReasonWithinPolicy, History: next}
}

// pruned returns the times still inside the window ending at now, in a new slice.
func pruned(times []time.Time, now time.Time, window time.Duration) []time.Time {
	out := make([]time.Time, 0, len(times)+1)
	for _, t := range times {
		if now.Sub(t) < window {
			out = append(out, t)
		}
	}
	return out
}
