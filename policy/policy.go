// Package policy decides what to do when a supervised container exits.
//
// Decide is a pure function of (history, exit, now): no Temporal, no
// containerd, no clock. The workflow feeds it and carries out the answer.
package policy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-run/vigil/runtime"
)

// Action is what a service asks for when one of its containers exits
// (the deployment file's errors.on_panic.action, or a rule's action).
type Action string

const (
	ActionRestart  Action = "restart"
	ActionShutdown Action = "shutdown"
	ActionIsolate  Action = "isolate"
	// ActionComplete ends supervision as a successful exit does (rules only).
	ActionComplete Action = "complete"
)

// Defaults of the original supervisor (the in-memory Rust supervisor Vigil
// ports; see README.md), and of the exponential backoff.
const (
	DefaultMaxRestarts   = 5
	DefaultRestartWindow = 300 * time.Second
	DefaultPollInterval  = 5 * time.Second
	DefaultBackoff       = 30 * time.Second

	DefaultBackoffInitial    = 10 * time.Second
	DefaultBackoffMax        = 5 * time.Minute
	DefaultBackoffMultiplier = 2.0
	DefaultBackoffResetAfter = 10 * time.Minute
)

// Policy is one service's restart policy.
type Policy struct {
	Action        Action        `json:"action"`
	MaxRestarts   int           `json:"max_restarts"`
	RestartWindow time.Duration `json:"restart_window"`
	// Backoff is the fixed crash-loop backoff, used when Exponential is nil.
	Backoff      time.Duration `json:"backoff"`
	PollInterval time.Duration `json:"poll_interval"`
	// Exponential, when set, replaces the fixed Backoff.
	Exponential *Exponential `json:"exponential,omitempty"`
	// Rules are tried in order on every exit; the first match decides.
	Rules []Rule `json:"rules,omitempty"`
	// Seed makes the jitter of one replica deterministic (replays agree) and
	// different from its siblings'. The workflow sets it from its ID; it is
	// not part of the deployment file.
	Seed uint64 `json:"-"`
}

// Exponential is a crash-loop backoff that grows with each episode: the
// n-th waits min(Initial*Multiplier^(n-1), Max) plus up to Jitter of it.
// ResetAfter of running without a crash starts the sequence again.
type Exponential struct {
	Initial    time.Duration `json:"initial"`
	Max        time.Duration `json:"max"`
	Multiplier float64       `json:"multiplier"`
	Jitter     float64       `json:"jitter,omitempty"`
	ResetAfter time.Duration `json:"reset_after"`
}

// Rule maps exits to an action: it matches an exit whose code is one of
// ExitCodes or whose killing signal is one of Signals (canonical names,
// "SIGSEGV").
type Rule struct {
	ExitCodes []int    `json:"exit_codes,omitempty"`
	Signals   []string `json:"signals,omitempty"`
	Action    Action   `json:"action"`
}

// String is the rule as a deployment file writes it:
// "{ exit_codes: [42, 43], action: shutdown }".
func (r Rule) String() string {
	var parts []string
	if len(r.ExitCodes) > 0 {
		codes := make([]string, len(r.ExitCodes))
		for i, c := range r.ExitCodes {
			codes[i] = strconv.Itoa(c)
		}
		parts = append(parts, "exit_codes: ["+strings.Join(codes, ", ")+"]")
	}
	if len(r.Signals) > 0 {
		parts = append(parts, "signals: ["+strings.Join(r.Signals, ", ")+"]")
	}
	parts = append(parts, "action: "+string(r.Action))
	return "{ " + strings.Join(parts, ", ") + " }"
}

// Matches reports whether the rule applies to exit.
func (r Rule) Matches(exit runtime.Exit) bool {
	for _, c := range r.ExitCodes {
		if c == exit.ExitCode {
			return true
		}
	}
	for _, s := range r.Signals {
		if exit.Signal != "" && s == exit.Signal {
			return true
		}
	}
	return false
}

// Default is the original supervisor's policy (the Rust supervisor Vigil ports; see README.md).
func Default() Policy {
	return Policy{
		Action:        ActionRestart,
		MaxRestarts:   DefaultMaxRestarts,
		RestartWindow: DefaultRestartWindow,
		Backoff:       DefaultBackoff,
		PollInterval:  DefaultPollInterval,
	}
}

// WithDefaults fills the zero fields of p (and of its exponential backoff)
// with the defaults.
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
	if p.Exponential != nil {
		e := *p.Exponential
		if e.Initial == 0 {
			e.Initial = DefaultBackoffInitial
		}
		if e.Max == 0 {
			e.Max = max(DefaultBackoffMax, e.Initial)
		}
		if e.Multiplier == 0 {
			e.Multiplier = DefaultBackoffMultiplier
		}
		if e.ResetAfter == 0 {
			e.ResetAfter = DefaultBackoffResetAfter
		}
		p.Exponential = &e
	}
	return p
}

// FieldError is a policy value out of range: Field is its name in the
// deployment file's errors.on_panic ("backoff.multiplier", "rules[1].action"),
// Msg what is wrong and the fix.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Validate reports the first field that is out of range as a *FieldError,
// naming it and the fix.
func (p Policy) Validate() error {
	switch p.Action {
	case ActionRestart, ActionShutdown, ActionIsolate:
	default:
		return fieldErr("action", "%q is not one of restart, shutdown, isolate", p.Action)
	}
	if p.MaxRestarts < 0 {
		return fieldErr("max_restarts", "%d is negative; use 0 or more", p.MaxRestarts)
	}
	if p.RestartWindow <= 0 {
		return fieldErr("restart_window", "%s must be positive, e.g. 300s", p.RestartWindow)
	}
	if p.Backoff <= 0 {
		return fieldErr("backoff", "%s must be positive, e.g. 30s", p.Backoff)
	}
	if p.PollInterval <= 0 {
		return fieldErr("poll_interval", "%s must be positive, e.g. 5s", p.PollInterval)
	}
	if e := p.Exponential; e != nil {
		if err := e.validate(); err != nil {
			return err
		}
	}
	for i, r := range p.Rules {
		if err := r.validate(fmt.Sprintf("rules[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}

func (e Exponential) validate() error {
	switch {
	case e.Initial <= 0:
		return fieldErr("backoff.initial", "%s must be positive, e.g. 10s", e.Initial)
	case e.Max < e.Initial:
		return fieldErr("backoff.max", "%s is less than initial %s; use at least initial, e.g. 5m", e.Max, e.Initial)
	case math.IsNaN(e.Multiplier) || e.Multiplier < 1 || e.Multiplier > 100:
		return fieldErr("backoff.multiplier", "%v is out of range; use 1 (a fixed backoff) to 100, e.g. 2", e.Multiplier)
	case math.IsNaN(e.Jitter) || e.Jitter < 0 || e.Jitter > 1:
		return fieldErr("backoff.jitter", "%v is out of range; use 0 to 1, e.g. 0.1 for up to 10%% more", e.Jitter)
	case e.ResetAfter <= 0:
		return fieldErr("backoff.reset_after", "%s must be positive, e.g. 10m", e.ResetAfter)
	}
	return nil
}

func (r Rule) validate(field string) error {
	switch r.Action {
	case ActionRestart, ActionShutdown, ActionIsolate, ActionComplete:
	default:
		return fieldErr(field+".action", "%q is not one of restart, shutdown, isolate, complete", r.Action)
	}
	if len(r.ExitCodes) == 0 && len(r.Signals) == 0 {
		return fieldErr(field, "matches nothing; give exit_codes (e.g. [42]) or signals (e.g. [SIGSEGV])")
	}
	for j, c := range r.ExitCodes {
		if c < runtime.FailedExitCode || c > 255 {
			return fieldErr(fmt.Sprintf("%s.exit_codes[%d]", field, j), "%d is out of range; use 0 to 255 (-1 for a container that could not run)", c)
		}
	}
	for j, s := range r.Signals {
		name, err := runtime.ParseSignal(s)
		if err != nil {
			return fieldErr(fmt.Sprintf("%s.signals[%d]", field, j), "%v", err)
		}
		if name != s {
			return fieldErr(fmt.Sprintf("%s.signals[%d]", field, j), "%q is not canonical; write %s", s, name)
		}
	}
	return nil
}

// History is what the policy remembers between exits: the times of the
// crashes counted in the sliding window, oldest first, and, for the
// exponential backoff, the episodes so far and the last crash.
type History struct {
	RestartTimes []time.Time `json:"restart_times"`
	// Episodes counts the crash-loop episodes since the sequence last reset
	// (exponential backoff only).
	Episodes int `json:"episodes,omitempty"`
	// LastCrash is the time of the last crash (exponential backoff only).
	LastCrash time.Time `json:"last_crash,omitzero"`
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
	// Episode is the crash-loop episode this backoff is (BackOff only, from 1).
	Episode int
	// History is the history after this exit.
	History History
	// Rule is the index of the rule that decided (nil: no rule matched).
	Rule *int
}

// Decide returns what to do about exit, given the history so far and the current time.
//
// The first rule that matches the exit decides its action; with none, exit
// code 0 completes (unless the container was stopped as unhealthy) and any
// other exit takes the panic action. Only restarts are counted in the window:
// the window exists to detect restart loops. More than MaxRestarts restarts
// within RestartWindow (counting this one) is a crash loop.
func (p Policy) Decide(h History, exit runtime.Exit, now time.Time) Decision {
	next := History{RestartTimes: pruned(h.RestartTimes, now, p.RestartWindow), Episodes: h.Episodes, LastCrash: h.LastCrash}
	action, why, rule := p.action(exit)
	switch action {
	case ActionComplete:
		return Decision{Outcome: Complete, Reason: why, History: next, Rule: rule}
	case ActionShutdown:
		return Decision{Outcome: Shutdown, Reason: why, History: next, Rule: rule}
	case ActionIsolate:
		return Decision{Outcome: Isolate, Reason: why, History: next, Rule: rule}
	}
	if p.Exponential != nil {
		if p.ranLongEnough(h, exit, now) {
			next.Episodes = 0
		}
		next.LastCrash = now
	}
	next.RestartTimes = append(next.RestartTimes, now)
	if len(next.RestartTimes) <= p.MaxRestarts {
		return Decision{Outcome: Restart, Reason: why, History: next, Rule: rule}
	}
	next.Episodes++
	wait := p.Backoff
	if p.Exponential != nil {
		wait = p.Exponential.Delay(next.Episodes, p.Seed)
	} else {
		next.Episodes = 0 // the fixed backoff keeps no episodes
	}
	return Decision{Outcome: BackOff, Reason: ReasonCrashLoop, RestartAt: now.Add(wait), Episode: max(next.Episodes, 1), History: next, Rule: rule}
}

// action is the action the exit calls for, why, and the index of the rule
// that decided (nil if none did).
func (p Policy) action(exit runtime.Exit) (Action, string, *int) {
	for i, r := range p.Rules {
		if r.Matches(exit) {
			return r.Action, fmt.Sprintf("exit matched rules[%d]; action %s", i, r.Action), &i
		}
	}
	if exit.ExitCode == 0 && exit.Cause != runtime.ExitUnhealthy {
		return ActionComplete, ReasonExitedSuccessfully, nil
	}
	switch p.Action {
	case ActionShutdown:
		return ActionShutdown, ReasonShutdownPolicy, nil
	case ActionIsolate:
		return ActionIsolate, ReasonIsolatePolicy, nil
	}
	return ActionRestart, ReasonWithinPolicy, nil
}

// ranLongEnough reports whether the container ran ResetAfter without a
// crash: measured from its own start when the runtime reported it, else
// from the last crash.
func (p Policy) ranLongEnough(h History, exit runtime.Exit, now time.Time) bool {
	reset := p.Exponential.ResetAfter
	if !exit.StartedAt.IsZero() && !exit.ExitedAt.IsZero() {
		return exit.ExitedAt.Sub(exit.StartedAt) >= reset
	}
	return !h.LastCrash.IsZero() && now.Sub(h.LastCrash) >= reset
}

// Delay is the wait of the n-th crash-loop episode (from 1):
// min(Initial*Multiplier^(n-1), Max), plus up to Jitter of it, the jitter
// drawn deterministically from seed and n.
func (e Exponential) Delay(n int, seed uint64) time.Duration {
	base := float64(e.Initial) * math.Pow(e.Multiplier, float64(max(n, 1)-1))
	if base > float64(e.Max) || math.IsInf(base, 0) || math.IsNaN(base) {
		base = float64(e.Max)
	}
	d := time.Duration(base)
	if e.Jitter > 0 {
		d += time.Duration(base * e.Jitter * unit(seed, uint64(n)))
	}
	return d
}

// unit maps (seed, n) to [0, 1) with SplitMix64, so that neighbouring seeds
// and episodes give unrelated fractions.
func unit(seed, n uint64) float64 {
	z := seed + n*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
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
