// Package workflows holds the durable supervisor: one workflow per replica.
//
// The workflow is a thin deterministic shell around policy.Decide: the node
// watch reports the container's exits (a signal), the policy says what an
// exit means, and the workflow carries the answer out with activities on the
// replica's node and durable timers. Everything it knows lives in Carry, so a continued run, a replayed
// run or a run on another worker picks up exactly where the last one stood.
package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

const (
	// DefaultContinueAsNewAfter bounds the exits handled by one run, so a
	// crash-looping replica's history stays far below Temporal's limits.
	DefaultContinueAsNewAfter = 100
	// DefaultContinueAsNewEvery bounds the workflow time of one run, so a
	// healthy replica's run ends too (about 15 history events a day) and a
	// version branch can be retired a day after its last worker is gone.
	DefaultContinueAsNewEvery = 24 * time.Hour
	// MinContinueAsNewEvery keeps a tiny setting from spinning runs.
	MinContinueAsNewEvery = time.Second
	// maxEvents bounds the events kept in state; all of them are in history.
	maxEvents = 50
	// maxPendingExits bounds the exit reports kept until acted on.
	maxPendingExits = 8
	// Start retries after the activity's own retries are spent.
	startRetryFirst = 5 * time.Second
	startRetryMax   = 5 * time.Minute
	// watchHeartbeat is short so a dead worker's watch moves to a live one
	// within about 15 s.
	watchHeartbeat = 10 * time.Second
)

// errUnsupervised ends the run when an operator ends supervision.
var errUnsupervised = errors.New("unsupervised")

// errSuperseded (since v0.3.0) ends a start that keeps failing because the
// deployment's request taken between its attempts decided instead: a
// replacement made a new container, or a shutdown stopped the replica. The
// state is the request's; the start's caller counts no restart.
var errSuperseded = errors.New("start superseded by the deployment's request")

// oldRelease is what the runs of an old release do their own way, one
// method per helper whose commands differ; each such helper asks s.old()
// first. Each old release's own file registers one in releases (init).
type oldRelease interface {
	open(ctx workflow.Context, s *supervisor)
	validate(s *supervisor, c *command) error
	watch(ctx workflow.Context, s *supervisor) error
	handle(ctx workflow.Context, s *supervisor, c *command) error
	start(ctx workflow.Context, s *supervisor, after time.Time) (activities.EnsureRunningResult, error)
	isolate(ctx workflow.Context, s *supervisor, in activities.IsolateInput) error
	decide(ctx workflow.Context, s *supervisor, exit runtime.Exit) policy.Decision
	shutDownService(ctx workflow.Context, s *supervisor, code int)
	closeRun(ctx workflow.Context, s *supervisor)
}

// releases holds the old releases whose runs this worker still supervises.
var releases = map[Release]oldRelease{}

// coreSince is the oldest release whose runs the code in this package
// supervises without an oldRelease.
const coreSince = V020

// supervisor is the workflow's state and the code that moves it.
type supervisor struct {
	// busyDoing says what activity the loop waits on (activity); the
	// deployment's requests are then refused in the validator, as Busy, so
	// that a retry with the same update ID is not answered from history.
	busyDoing string
	in        SupervisionInput
	st        Carry
	rel       Release // the release the run was started under
	commands  workflow.Channel
	// exits receives the node watch's exit reports (SignalExit).
	exits    workflow.ReceiveChannel
	inFlight *command
	// fresh is true on the first run of a supervision (no carried state).
	fresh bool
	// exitsThisRun counts the exits this run has handled, for continue-as-new.
	exitsThisRun int
	// ignoredThisRun counts the exit reports this run received and did not
	// act on (repeats): they count towards continue-as-new like exits.
	ignoredThisRun int
	// canDue fires when this run has lasted runLength (nil when the
	// release has no such timer). One timer per run: every wait selects on it.
	canDue workflow.Future
	// why is the reason for the next start, shown as its activity's summary.
	why string
	// waiting is a restart request answered by the outcome of the start in
	// progress.
	waiting *command
	// rollover: an operator asked for a new run now (UpdateRollover).
	rollover bool
	// leases receives the node's lease notices (SignalNodeLease, since
	// v0.3.0); moveDue fires when the lapsed lease is lost_after old
	// (nil: not lapsed), moveCancel drops that timer.
	leases     workflow.ReceiveChannel
	moveDue    workflow.Future
	moveCancel func()
}

// Supervise supervises one container replica until it completes or is unsupervised.
func Supervise(ctx workflow.Context, in SupervisionInput) error {
	s := newSupervisor(ctx, in)
	s.rel = readRelease(ctx, replicaLegacyRelease)
	if s.rel < coreSince && s.old() == nil {
		panic(fmt.Sprintf("%s runs are retired: this worker does not supervise them; move them to a new run (vigil rollover) with a worker of an earlier release", s.rel))
	}
	if err := s.registerHandlers(ctx); err != nil {
		return err
	}
	err := s.run(ctx)
	if errors.Is(err, errUnsupervised) {
		return nil
	}
	return err
}

func newSupervisor(ctx workflow.Context, in SupervisionInput) *supervisor {
	in.ReplicaConfig = in.ReplicaConfig.withDefaults()
	if in.ContinueAsNewEvery <= 0 {
		in.ContinueAsNewEvery = DefaultContinueAsNewEvery
	}
	in.ContinueAsNewEvery = max(in.ContinueAsNewEvery, MinContinueAsNewEvery)
	s := &supervisor{in: in, commands: workflow.NewBufferedChannel(ctx, 8), fresh: in.Carry == nil,
		exits: workflow.GetSignalChannel(ctx, replica.SignalExit), leases: workflow.GetSignalChannel(ctx, replica.SignalNodeLease)}
	if in.Carry != nil {
		s.st = *in.Carry
		s.in.Carry = nil
	} else {
		s.st = Carry{State: StateRunning, SupervisedSince: workflow.Now(ctx), Generation: in.Generation}
	}
	return s
}

// old is how this run's release differs from the current code (nil: not at all).
func (s *supervisor) old() oldRelease { return releases[s.rel] }

// open begins a run: a first run is Pending until its first start has
// worked; the state is published; the run continues as new when it has
// lasted runLength; the node's health reports are followed.
func (s *supervisor) open(ctx workflow.Context) {
	if o := s.old(); o != nil {
		o.open(ctx, s)
		return
	}
	if s.fresh {
		s.st.State = StatePending
	}
	workflow.Go(ctx, s.followHealth)
	s.publishState(ctx)
	s.canDue = workflow.NewTimerWithOptions(ctx, s.runLength(ctx),
		workflow.TimerOptions{Summary: "periodic continue-as-new"})
	if !s.st.NodeLapsedAt.IsZero() {
		// The lease lapsed during the last run: its timer goes on here.
		s.armMove(ctx, s.st.NodeLapsedAt.Add(s.in.NodeLostAfter()).Sub(workflow.Now(ctx)))
	}
}

// run is the main loop: one step per state until supervision ends.
func (s *supervisor) run(ctx workflow.Context) error {
	s.open(ctx)
	if s.fresh {
		// Make sure the container exists and runs. A task that exited before
		// now is started again; one already running is left alone.
		s.why = "first start"
		if _, err := s.start(ctx, workflow.Now(ctx), untilRunning); err == nil {
			s.setState(ctx, StateRunning)
		} else if !errors.Is(err, errSuperseded) {
			return err
		}
	}
	for {
		if s.shouldContinueAsNew(ctx) {
			if err := s.continueAsNew(ctx); err != nil {
				return err
			}
		}
		var err error
		switch s.st.State {
		case StatePending:
			// Only a continued run gets here (a fresh one started above).
			s.why = "first start"
			if _, err = s.start(ctx, workflow.Now(ctx), untilRunning); err == nil {
				s.setState(ctx, StateRunning)
			}
		case StateRunning, StateNodeLost:
			err = s.watch(ctx)
		case StateRestarting:
			err = s.restartNow(ctx)
		case StateCrashLoopBackOff:
			err = s.waitBackoff(ctx)
		case StateIsolated, StateShutdown:
			err = s.waitForOperator(ctx)
		case StateCompleted:
			return nil
		default:
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("unknown state %q", s.st.State), "BadState", nil)
		}
		if err != nil && !errors.Is(err, errSuperseded) {
			return err
		}
	}
}

// waitForOperator parks an Isolated or Shutdown replica until release or unsupervise.
func (s *supervisor) waitForOperator(ctx workflow.Context) error {
	s.details(ctx, string(s.st.State)+": waiting for release or unsupervise")
	w := s.waitFor(ctx, nil, true)
	if w.cmd == nil {
		return nil // time for a new run, which waits on in the same state
	}
	return s.handle(ctx, w.cmd)
}

// wakeUp is what ended a wait: the awaited future or timer (ready), an
// operator command (cmd), or the run's continue-as-new timer (due).
type wakeUp struct {
	ready bool
	cmd   *command
	due   bool
}

// waitFor is every wait of the workflow: it blocks until f is ready (nil:
// nothing to await), an operator command arrives, or, with untilDue, the
// run's continue-as-new timer fires; the main loop then continues as new
// (shouldContinueAsNew). It does not Get f. The cases are added in this
// order in every wait, so the commands issued stay the same.
//
// Since v0.3.0 it also takes the exit reports that arrive meanwhile (kept
// if current, counted if not: takeReport), and each such wake-up checks
// whether to continue as new: with untilDue, it then returns as due, so
// that a parked replica's history does not grow with repeated reports.
func (s *supervisor) waitFor(ctx workflow.Context, f workflow.Future, untilDue bool) wakeUp {
	for {
		var w wakeUp
		reported := false
		sel := workflow.NewSelector(ctx)
		if f != nil {
			sel.AddFuture(f, func(workflow.Future) { w.ready = true })
		}
		sel.AddReceive(s.commands, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &w.cmd) })
		if untilDue && s.canDue != nil {
			sel.AddFuture(s.canDue, func(workflow.Future) { w.due = true })
		}
		if s.rel >= V030 {
			sel.AddReceive(s.exits, func(c workflow.ReceiveChannel, _ bool) { s.takeReport(ctx, c); reported = true })
			sel.AddReceive(s.leases, func(c workflow.ReceiveChannel, _ bool) { s.takeLeaseNotice(ctx, c); reported = true })
		}
		sel.Select(ctx)
		if !reported {
			return w
		}
		if untilDue && s.shouldContinueAsNew(ctx) {
			return wakeUp{due: true}
		}
	}
}
