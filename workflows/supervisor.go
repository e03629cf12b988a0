// Package workflows holds the durable supervisor: one workflow per replica.
//
// The workflow is a thin deterministic shell around policy.Decide: it watches
// the container through activities on the replica's node, asks the policy
// what an exit means, and carries the answer out with activities and durable
// timers. Everything it knows lives in Carry, so a continued run, a replayed
// run or a run on another worker picks up exactly where the last one stood.
package workflows

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/metrics"
	"github.com/vigil-run/vigil/policy"
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
	// Start retries after the activity's own retries are spent.
	startRetryFirst = 5 * time.Second
	startRetryMax   = 5 * time.Minute
	// watchHeartbeat is short so a dead worker's watch moves to a live one
	// within about 15 s.
	watchHeartbeat = 10 * time.Second
)

// errUnsupervised ends the run when an operator ends supervision.
var errUnsupervised = errors.New("unsupervised")

type commandKind string

const (
	cmdRelease     commandKind = UpdateRelease
	cmdRestart     commandKind = UpdateRestart
	cmdRollover    commandKind = UpdateRollover
	cmdUnsupervise commandKind = UpdateUnsupervise
	cmdReconfigure commandKind = UpdateReconfigure
	cmdShutdown    commandKind = UpdateShutdown
)

// command is an operator request handed from an update handler to the main loop.
type command struct {
	kind      commandKind
	stop      bool // unsupervise only
	requestID string
	// reconf is the reconfigure request; result its answer.
	reconf *ReconfigureRequest
	result ReconfigureResult
	done   bool
	err    error
	note   string // what was done, for an operator request's result
	// volumes (unsupervise with stop only) also deletes the replica's
	// named volumes.
	volumes bool
}

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
	decide(ctx workflow.Context, s *supervisor, exit policy.Exit) policy.Decision
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
	// canDue fires when this run has lasted ContinueAsNewEvery (nil when the
	// release has no such timer). One timer per run: every wait selects on it.
	canDue workflow.Future
	// why is the reason for the next start, shown as its activity's summary.
	why string
	// waiting is a restart request answered by the outcome of the start in
	// progress.
	waiting *command
	// rollover: an operator asked for a new run now (UpdateRollover).
	rollover bool
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
	in.Policy = in.Policy.WithDefaults()
	if in.StopGrace <= 0 {
		in.StopGrace = runtime.DefaultStopGrace
	}
	if in.ContinueAsNewEvery <= 0 {
		in.ContinueAsNewEvery = DefaultContinueAsNewEvery
	}
	in.ContinueAsNewEvery = max(in.ContinueAsNewEvery, MinContinueAsNewEvery)
	s := &supervisor{in: in, commands: workflow.NewBufferedChannel(ctx, 8), fresh: in.Carry == nil,
		exits: workflow.GetSignalChannel(ctx, SignalExit)}
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
// lasted ContinueAsNewEvery; the node's health reports are followed.
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
	s.canDue = workflow.NewTimerWithOptions(ctx, s.in.ContinueAsNewEvery,
		workflow.TimerOptions{Summary: "periodic continue-as-new"})
}

func (s *supervisor) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (StateView, error) {
		return s.view(), nil
	}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, QueryConfig, func() (SupervisionInput, error) {
		return s.in, nil
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRelease,
		func(ctx workflow.Context, req ReleaseRequest) (UpdateResult, error) {
			return s.submit(ctx, &command{kind: cmdRelease, requestID: req.RequestID})
		},
		workflow.UpdateHandlerOptions{Validator: func(req ReleaseRequest) error {
			return s.validate(&command{kind: cmdRelease, requestID: req.RequestID})
		}}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRestart,
		func(ctx workflow.Context, req RestartRequest) (UpdateResult, error) {
			return s.submit(ctx, &command{kind: cmdRestart, requestID: req.RequestID})
		},
		workflow.UpdateHandlerOptions{Validator: func(req RestartRequest) error {
			return s.validate(&command{kind: cmdRestart, requestID: req.RequestID})
		}}); err != nil {
		return err
	}
	// Registered in every run, old ones too: registering issues no command,
	// so a run started by an older release can be moved onto this release's
	// code (its new run reads the current versions) without replay trouble.
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateRollover,
		func(ctx workflow.Context, req RolloverRequest) (UpdateResult, error) {
			return s.submit(ctx, &command{kind: cmdRollover, requestID: req.RequestID})
		},
		workflow.UpdateHandlerOptions{Validator: func(req RolloverRequest) error {
			return s.validate(&command{kind: cmdRollover, requestID: req.RequestID})
		}}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateUnsupervise,
		func(ctx workflow.Context, req UnsuperviseRequest) (UpdateResult, error) {
			return s.submit(ctx, &command{kind: cmdUnsupervise, stop: req.Stop, volumes: req.Volumes, requestID: req.RequestID})
		},
		workflow.UpdateHandlerOptions{Validator: func(req UnsuperviseRequest) error {
			if req.Volumes && !req.Stop {
				return errors.New("unsupervise: deleting volumes needs stop too (--stop --volumes): a running container would keep writing to them")
			}
			return s.validate(&command{kind: cmdUnsupervise, stop: req.Stop, requestID: req.RequestID})
		}}); err != nil {
		return err
	}
	return s.registerDeploymentHandlers(ctx)
}

// followHealth records the probes' verdicts the node signals. Only the
// container that runs now has a health: reports in other states are stale.
func (s *supervisor) followHealth(ctx workflow.Context) {
	ch := workflow.GetSignalChannel(ctx, SignalHealth)
	for {
		var r HealthReport
		ch.Receive(ctx, &r)
		if s.st.State != StateRunning || s.in.Spec.Health == nil {
			continue
		}
		if !r.StartedAt.IsZero() && !s.st.TaskStartedAt.IsZero() && !r.StartedAt.Equal(s.st.TaskStartedAt) {
			continue // about an earlier task
		}
		switch r.Status {
		case runtime.HealthStarting, runtime.HealthHealthy, runtime.HealthUnhealthy:
			if s.st.Health != r.Status {
				workflow.GetLogger(ctx).Info("health changed", "from", string(s.st.Health), "to", string(r.Status))
				s.st.Health = r.Status
			}
		}
	}
}

// joins returns the request in flight that c is a repetition of: the same
// request ID, or the same request (kind and options) sent again, e.g. by an
// operator retrying after the CLI timed out. c then waits for its result
// instead of being refused.
func (s *supervisor) joins(c *command) *command {
	in := s.inFlight
	if in == nil || s.old() != nil { // an old release's runs answer each request alone
		return nil
	}
	if c.requestID != "" && c.requestID == in.requestID {
		return in
	}
	// Only an operator's requests are joined by kind: a reconfigure carries
	// its own generation.
	operator := c.kind == cmdRelease || c.kind == cmdRestart || c.kind == cmdUnsupervise
	if operator && c.kind == in.kind && c.stop == in.stop {
		return in
	}
	return nil
}

// validate rejects a request before it reaches history. It must not change state.
func (s *supervisor) validate(c *command) error {
	if s.joins(c) != nil {
		return nil
	}
	kind := c.kind
	if s.inFlight != nil && (kind != cmdUnsupervise || s.inFlight.kind == cmdUnsupervise) {
		return temporal.NewApplicationError(fmt.Sprintf("%s: another request (%s) is in progress; retry when it has finished", kind, s.inFlight.kind), ErrTypeBusy)
	}
	if s.busyDoing != "" && (kind == cmdReconfigure || kind == cmdShutdown) {
		return temporal.NewApplicationError(fmt.Sprintf("%s: the replica is busy %s; try again when it is done", kind, s.busyDoing), ErrTypeBusy)
	}
	if o := s.old(); o != nil {
		if err := o.validate(s, c); err != nil {
			return err
		}
	}
	switch kind {
	case cmdRelease:
		if s.st.State != StateIsolated && s.st.State != StateShutdown {
			return fmt.Errorf("release: replica is %s; release applies only to Isolated or Shutdown replicas", s.st.State)
		}
	case cmdRestart:
		if s.st.State == StatePending || s.st.State == StateRestarting {
			return nil // a start that keeps failing is tried again now
		}
		if s.st.State != StateRunning && s.st.State != StateCrashLoopBackOff {
			return errRestartNotApplicable(s.st.State)
		}
	case cmdReconfigure, cmdShutdown:
		if s.st.State == StateCompleted {
			return fmt.Errorf("%s: replica is Completed; its supervision has ended", kind)
		}
	case cmdRollover:
		if s.st.State == StateRestarting || s.st.State == StatePending {
			return fmt.Errorf("rollover: replica is %s; retry once its start has worked", s.st.State)
		}
	}
	return nil
}

func errRestartNotApplicable(st State) error {
	return fmt.Errorf("restart: replica is %s; restart applies only to Running or CrashLoopBackOff replicas (use release for Isolated or Shutdown)", st)
}

// submit hands a command to the main loop and waits until it has been carried out.
func (s *supervisor) submit(ctx workflow.Context, c *command) (UpdateResult, error) {
	if in := s.joins(c); in != nil {
		c = in
	} else {
		s.inFlight = c
		s.commands.Send(ctx, c)
	}
	if err := workflow.Await(ctx, func() bool { return c.done }); err != nil {
		return UpdateResult{}, err
	}
	return UpdateResult{RequestID: c.requestID, Note: c.note}, c.err
}

func (s *supervisor) finish(c *command, err error) {
	c.done, c.err = true, err
	if s.inFlight == c {
		s.inFlight = nil
	}
}

// run is the main loop: one step per state until supervision ends.
func (s *supervisor) run(ctx workflow.Context) error {
	s.open(ctx)
	if s.fresh {
		// Make sure the container exists and runs. A task that exited before
		// now is started again; one already running is left alone.
		s.why = "first start"
		if _, err := s.start(ctx, workflow.Now(ctx)); err != nil {
			return err
		}
		s.setState(ctx, StateRunning)
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
			if _, err = s.start(ctx, workflow.Now(ctx)); err == nil {
				s.setState(ctx, StateRunning)
			}
		case StateRunning:
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
		if err != nil {
			return err
		}
	}
}

// watch waits, with no activity in flight, for the node watch to report the
// current task's exit (or for an operator command) and acts on it.
func (s *supervisor) watch(ctx workflow.Context) error {
	if o := s.old(); o != nil {
		return o.watch(ctx, s)
	}
	s.details(ctx, "watching: container running (node watch)")
	awaitingExit()
	for {
		if e, ok := s.nextExit(); ok {
			exit := policy.Exit{Code: e.ExitCode, At: e.ExitedAt, Reason: e.Reason, Cause: e.Cause, Signal: e.Signal, StartedAt: e.StartedAt}
			if exit.StartedAt.IsZero() {
				exit.StartedAt = s.st.TaskStartedAt
			}
			return s.onExit(ctx, exit)
		}
		var cmd *command
		received, due := false, false
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(s.exits, func(c workflow.ReceiveChannel, _ bool) {
			var e activities.ExitReport
			c.Receive(ctx, &e)
			s.queueExit(ctx, e)
			received = true
		})
		sel.AddReceive(s.commands, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &cmd) })
		if s.canDue != nil {
			sel.AddFuture(s.canDue, func(workflow.Future) { due = true })
		}
		sel.Select(ctx)
		if cmd != nil {
			return s.handle(ctx, cmd)
		}
		if due && !received {
			// Time for a new run; exits reported meanwhile go with it.
			return nil
		}
	}
}

// awaitingExit is called each time a run begins to wait for an exit: the
// tests' stand-in for the node watch counts watches with it.
var awaitingExit = func() {}

// current reports whether an exit is of the task the replica last started
// and not handled yet. Each exit is identified by its time: the node watch
// may report one twice (a new watch reports what it finds), and an exit of
// an older task (an operator's stop, a crash already answered) comes before
// the current task's WatchAfter.
func (s *supervisor) current(e activities.ExitReport) bool {
	if e.PID != 0 && s.st.TaskPID != 0 && e.PID != s.st.TaskPID {
		// Another task: e.g. a half-made one the start killed, whose exit
		// the runtime may time after the start began.
		return false
	}
	return e.ExitedAt.After(s.st.WatchAfter) && e.ExitedAt.After(s.st.LastExitAt)
}

// queueExit keeps a reported exit of the current task until it is acted on.
func (s *supervisor) queueExit(ctx workflow.Context, e activities.ExitReport) {
	if !s.current(e) {
		workflow.GetLogger(ctx).Debug("exit report ignored: an older task or already handled", "exited_at", e.ExitedAt)
		return
	}
	for _, p := range s.st.PendingExits {
		if p.ExitedAt.Equal(e.ExitedAt) {
			return
		}
	}
	s.st.PendingExits = append(s.st.PendingExits, e)
}

// nextExit takes the earliest pending exit that is still current.
func (s *supervisor) nextExit() (activities.ExitReport, bool) {
	best := -1
	for i, p := range s.st.PendingExits {
		if s.current(p) && (best < 0 || p.ExitedAt.Before(s.st.PendingExits[best].ExitedAt)) {
			best = i
		}
	}
	if best < 0 {
		s.st.PendingExits = nil
		return activities.ExitReport{}, false
	}
	e := s.st.PendingExits[best]
	s.st.PendingExits = slices.Delete(s.st.PendingExits, best, best+1)
	return e, true
}

// drainExits queues every exit report received so far, without blocking.
func (s *supervisor) drainExits(ctx workflow.Context) {
	var e activities.ExitReport
	for s.exits.ReceiveAsync(&e) {
		s.queueExit(ctx, e)
		e = activities.ExitReport{}
	}
}

// decide asks the policy what an exit means and records the exit's reason.
// The policy is the deployment's, with the jitter seeded by this replica's
// workflow ID (the same in every replay and run, different between replicas).
func (s *supervisor) decide(ctx workflow.Context, exit policy.Exit) policy.Decision {
	if o := s.old(); o != nil {
		return o.decide(ctx, s, exit)
	}
	p := s.in.Policy
	h := fnv.New64a()
	_, _ = h.Write([]byte(workflow.GetInfo(ctx).WorkflowExecution.ID))
	p.Seed = h.Sum64()
	d := p.Decide(s.st.History, exit, workflow.Now(ctx))
	s.st.LastExitReason = runtime.ExitReason(exitReason(exit))
	s.st.LastExitSignal = exit.Signal
	if s.st.Health != "" {
		s.st.Health = runtime.HealthStarting // the next task starts over
	}
	return d
}

// onExit asks the policy what an exit means and carries the decision out.
func (s *supervisor) onExit(ctx workflow.Context, exit policy.Exit) error {
	s.exitsThisRun++
	d := s.decide(ctx, exit)
	s.st.History = d.History
	code := exit.Code
	s.st.LastExitCode = &code
	s.st.LastExitAt = exit.At
	workflow.GetLogger(ctx).Info("container exited",
		"exit_code", exit.Code, "cause", string(exit.Cause), "signal", exit.Signal, "reason", exit.Reason,
		"decision", string(d.Outcome), "why", d.Reason, "backoff_episode", d.Episode)
	s.metric(ctx, exitReason(exit)).Counter(metrics.ContainerExits).Inc(1)

	switch d.Outcome {
	case policy.Complete:
		s.setState(ctx, StateCompleted)
		s.emit(ctx, EventContainerCompleted, &code)
		return nil
	case policy.Restart:
		s.why = fmt.Sprintf("restart after exit %d (crash %d of %d in %s)",
			code, len(d.History.RestartTimes), s.in.Policy.MaxRestarts, human(s.in.Policy.RestartWindow))
		s.setState(ctx, StateRestarting)
		return s.restartNow(ctx)
	case policy.BackOff:
		s.st.NextRestartAt = d.RestartAt
		s.setState(ctx, StateCrashLoopBackOff)
		s.emit(ctx, EventCrashLoopBackOff, &code)
		s.metric(ctx, "").Counter(metrics.CrashLoopBackoffs).Inc(1)
		return nil
	case policy.Shutdown:
		s.setState(ctx, StateShutdown)
		s.emit(ctx, EventServiceShutdown, &code)
		s.shutDownService(ctx, code)
		return nil
	case policy.Isolate:
		if err := s.isolate(ctx, code); err != nil {
			return err
		}
		s.setState(ctx, StateIsolated)
		s.emit(ctx, EventContainerIsolated, &code)
		return nil
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("unknown decision %q", d.Outcome), "BadDecision", nil)
}

// restartNow starts the container after a crash and counts the restart.
func (s *supervisor) restartNow(ctx workflow.Context) error {
	s.details(ctx, "restarting after a crash")
	started, err := s.start(ctx, s.st.LastExitAt)
	if err != nil {
		return err
	}
	if !started.StartedAt.IsZero() && !s.st.LastExitAt.IsZero() && started.StartedAt.After(s.st.LastExitAt) {
		// Both times are containerd's: the exit to the new task running.
		s.metric(ctx, "").Timer(metrics.RestartLatency).Record(started.StartedAt.Sub(s.st.LastExitAt))
	}
	s.countRestart(ctx)
	return nil
}

// waitBackoff waits out a crash-loop backoff on a durable timer, then starts
// the container once. The container is neither watched nor counted meanwhile.
func (s *supervisor) waitBackoff(ctx workflow.Context) error {
	remaining := s.st.NextRestartAt.Sub(workflow.Now(ctx))
	s.details(ctx, "crash-loop backoff until "+s.st.NextRestartAt.UTC().Format(time.RFC3339))
	if remaining > 0 {
		timerCtx, cancel := workflow.WithCancel(ctx)
		defer cancel()
		timer := workflow.NewTimerWithOptions(timerCtx, remaining,
			workflow.TimerOptions{Summary: "crash-loop backoff " + human(remaining.Round(time.Second))})
		w := s.waitFor(ctx, timer, true)
		if w.cmd != nil {
			cancel()
			return s.handle(ctx, w.cmd)
		}
		if w.due && !w.ready {
			// The deadline is in the carried state: the next run waits out the rest.
			return nil
		}
	}
	s.why = fmt.Sprintf("restart after crash-loop backoff %s (exit %s)", human(s.in.Policy.Backoff), exitText(s.st.LastExitCode))
	return s.endBackoff(ctx)
}

// endBackoff is the one delayed start of a crash-loop episode.
func (s *supervisor) endBackoff(ctx workflow.Context) error {
	s.setState(ctx, StateRestarting)
	if _, err := s.start(ctx, s.st.LastExitAt); err != nil {
		return err
	}
	s.st.NextRestartAt = time.Time{}
	s.countRestart(ctx)
	return nil
}

// countRestart records a restart actually made after a crash.
func (s *supervisor) countRestart(ctx workflow.Context) {
	s.st.TotalRestarts++
	s.metric(ctx, "").Counter(metrics.ContainerRestarts).Inc(1)
	s.setState(ctx, StateRunning)
	s.emit(ctx, EventContainerRestarted, s.st.LastExitCode)
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
func (s *supervisor) waitFor(ctx workflow.Context, f workflow.Future, untilDue bool) wakeUp {
	var w wakeUp
	sel := workflow.NewSelector(ctx)
	if f != nil {
		sel.AddFuture(f, func(workflow.Future) { w.ready = true })
	}
	sel.AddReceive(s.commands, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &w.cmd) })
	if untilDue && s.canDue != nil {
		sel.AddFuture(s.canDue, func(workflow.Future) { w.due = true })
	}
	sel.Select(ctx)
	return w
}

// handle carries out an operator command and reports the result to its update.
func (s *supervisor) handle(ctx workflow.Context, c *command) error {
	workflow.GetLogger(ctx).Info("operator request", "request", string(c.kind), "state", string(s.st.State))
	switch c.kind {
	case cmdRollover:
		// The main loop continues as new next (shouldContinueAsNew); a watch
		// in flight was dropped, a backoff deadline is carried.
		s.rollover = true
		s.finish(c, nil)
		return nil
	case cmdReconfigure, cmdShutdown:
		return s.handleDeployment(ctx, c)
	}
	if o := s.old(); o != nil {
		return o.handle(ctx, s, c)
	}
	return s.handleRequest(ctx, c)
}

// unknownRequest answers a request of a kind this code does not know.
func (s *supervisor) unknownRequest(c *command) error {
	s.finish(c, fmt.Errorf("unknown request %q", c.kind))
	return nil
}

// answer reports err to c's update and passes on only the error that ends
// supervision.
func (s *supervisor) answer(c *command, err error) error {
	s.finish(c, err)
	return unlessUnsupervised(err)
}

// startFor starts the container for an operator's request and answers it.
// Not a crash: nothing is counted.
func (s *supervisor) startFor(ctx workflow.Context, c *command, after time.Time) error {
	s.setState(ctx, StateRestarting)
	_, err := s.start(ctx, after)
	if err == nil {
		s.setState(ctx, StateRunning)
	}
	return s.answer(c, err)
}

// release starts an Isolated or Shutdown replica again: the operator takes
// responsibility, so the crash window starts afresh.
func (s *supervisor) release(ctx workflow.Context, c *command) error {
	s.st.History = policy.History{}
	return s.startFor(ctx, c, s.st.LastExitAt)
}

// unlessUnsupervised passes on only the error that ends supervision; other
// failures were already reported to the operator's update.
func unlessUnsupervised(err error) error {
	if errors.Is(err, errUnsupervised) {
		return err
	}
	return nil
}

// start makes the container run. It never gives up: after the activity's own
// retries it waits on a durable timer, with growing delays, and tries again,
// keeping the state and the last error visible. An unsupervise request ends it.
func (s *supervisor) start(ctx workflow.Context, after time.Time) (activities.EnsureRunningResult, error) {
	if o := s.old(); o != nil {
		return o.start(ctx, s, after)
	}
	res, err := s.startHeard(ctx, after)
	if err == nil && !res.StartedAt.Equal(s.st.TaskStartedAt) {
		// A new task: its health is unknown until the node's probes say.
		s.st.TaskStartedAt = res.StartedAt
		if s.st.Health != "" {
			s.st.Health = runtime.HealthStarting
		}
	}
	return res, err
}

// ensureRunning runs one EnsureRunning activity (its own quick retries
// included) and hears nothing meanwhile.
func (s *supervisor) ensureRunning(ctx workflow.Context, after time.Time, why string) (activities.EnsureRunningResult, error) {
	var res activities.EnsureRunningResult
	err := workflow.ExecuteActivity(s.startOptions(ctx, why), activities.EnsureRunningName,
		activities.EnsureRunningInput{ID: s.in.ID, Spec: s.replicaSpec(), After: after}).Get(ctx, &res)
	return res, err
}

// noteNetwork keeps where a started container can be reached, for status.
func (s *supervisor) noteNetwork(res activities.EnsureRunningResult) {
	if !res.ExitedSince {
		s.st.Network = res.Network
	}
}

// replicaSpec is the spec this replica's container is made from: the
// service's, with the host ports of this replica (runtime.ReplicaPorts).
func (s *supervisor) replicaSpec() runtime.ContainerSpec {
	spec := s.in.Spec
	spec.Ports = runtime.ReplicaPorts(spec.Ports, s.in.ID.Replica)
	return spec
}

// started records what a start left running: exits reported from now on
// must come after res.NotBefore. A task that already exited again (or could
// not start) is an exit to act on, whether or not the node watch reports it.
func (s *supervisor) started(ctx workflow.Context, res activities.EnsureRunningResult) {
	if res.ExitedSince {
		// Nothing was started: the task an earlier attempt started has
		// exited (after the exit being answered), or none could start.
		s.queueExit(ctx, activities.ExitReport{ID: s.in.ID, ExitCode: res.ExitCode, ExitedAt: res.ExitedAt, Reason: res.StartError})
		return
	}
	s.st.TaskStartedAt = res.StartedAt
	s.st.TaskPID = res.PID
	if !res.NotBefore.IsZero() {
		s.st.WatchAfter = res.NotBefore
	}
}

// stop stops the container: SIGTERM, SIGKILL after its grace period. With
// remove it is also removed (its address and ports are released), with
// volumes its named volumes deleted too: only an explicit unsupervise --stop
// --volumes does that.
func (s *supervisor) stop(ctx workflow.Context, remove, volumes bool, why string) (activities.StopResult, error) {
	var res activities.StopResult
	err := workflow.ExecuteActivity(s.controlOptions(ctx, why), activities.StopName,
		activities.StopInput{ID: s.in.ID, Grace: s.in.StopGrace, Remove: remove, RemoveVolumes: volumes}).Get(ctx, &res)
	return res, err
}

// isolate labels the container and calls the webhook. The replica is
// isolated either way (it will not be restarted), so a failure is only
// logged; the error returned is only errUnsupervised (an unsupervise request
// interrupts the activity).
func (s *supervisor) isolate(ctx workflow.Context, code int) error {
	in := activities.IsolateInput{ID: s.in.ID, ExitCode: code, Webhook: s.in.IsolateWebhook}
	if o := s.old(); o != nil {
		return o.isolate(ctx, s, in)
	}
	err := s.activity(ctx, s.controlOptions(ctx, fmt.Sprintf("isolate after exit %d", code)), activities.IsolateName, in, nil, "isolating the container", nil)
	if errors.Is(err, errUnsupervised) {
		return err
	}
	if err != nil {
		workflow.GetLogger(ctx).Error("isolate hook failed", "error", err)
	}
	return nil
}

// setState moves to st and publishes it as a search attribute.
func (s *supervisor) setState(ctx workflow.Context, st State) {
	if s.st.State == st {
		return
	}
	s.st.State = st
	s.publishState(ctx)
}

func (s *supervisor) publishState(ctx workflow.Context) {
	err := workflow.UpsertTypedSearchAttributes(ctx,
		SearchAttrState.ValueSet(string(s.st.State)),
		SearchAttrService.ValueSet(s.in.ID.Service),
		SearchAttrDeployment.ValueSet(s.in.ID.Deployment))
	if err != nil {
		workflow.GetLogger(ctx).Warn("search attributes not upserted", "error", err)
	}
}

// emit records an event in state and, through the memo, in history. It never blocks.
func (s *supervisor) emit(ctx workflow.Context, typ EventType, exitCode *int) {
	ev := Event{Type: typ}
	if exitCode != nil {
		code := *exitCode
		ev.ExitCode = &code
		if s.st.LastExitReason != "" {
			reason := string(s.st.LastExitReason)
			ev.Reason = &reason
		}
	}
	s.emitEvent(ctx, ev)
}

// emitEvent stamps ev with the time and the restart count and records it.
func (s *supervisor) emitEvent(ctx workflow.Context, ev Event) {
	ev.Time, ev.RestartCount = workflow.Now(ctx), s.st.TotalRestarts
	s.st.Events = append(s.st.Events, ev)
	if n := len(s.st.Events); n > maxEvents {
		s.st.Events = append([]Event(nil), s.st.Events[n-maxEvents:]...)
	}
	workflow.GetLogger(ctx).Info("supervision event", "event", string(ev.Type), "restart_count", ev.RestartCount)
	if err := workflow.UpsertMemo(ctx, map[string]any{MemoLastEvent: ev}); err != nil {
		workflow.GetLogger(ctx).Warn("event not recorded in memo", "error", err)
	}
}

// metric is the workflow's metrics handler tagged with this replica's
// service (and reason, when given). The SDK skips it during replay, so every
// decision is counted once.
func (s *supervisor) metric(ctx workflow.Context, reason string) client.MetricsHandler {
	tags := map[string]string{metrics.LabelDeployment: s.in.ID.Deployment, metrics.LabelService: s.in.ID.Service}
	if reason != "" {
		tags[metrics.LabelReason] = reason
	}
	return workflow.GetMetricsHandler(ctx).WithTags(tags)
}

// exitReason is the exit's reason label, as `vigil status` shows it.
func exitReason(exit policy.Exit) string {
	if exit.Cause == "" {
		return string(runtime.ExitExited)
	}
	return string(exit.Cause)
}

func (s *supervisor) details(ctx workflow.Context, what string) {
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("%s — %s, %d restarts", s.in.ID.Ref(), what, s.st.TotalRestarts))
}

func (s *supervisor) shouldContinueAsNew(ctx workflow.Context) bool {
	limit := s.in.ContinueAsNewAfter
	if limit <= 0 {
		limit = DefaultContinueAsNewAfter
	}
	return s.exitsThisRun >= limit || workflow.GetInfo(ctx).GetContinueAsNewSuggested() ||
		(s.canDue != nil && s.canDue.IsReady()) || s.rollover
}

// continueAsNew hands the whole state, including a backoff deadline, to a new
// run, once every update handler has finished. An operator request that is
// waiting is served first: it returns nil, and the loop comes back here later.
func (s *supervisor) continueAsNew(ctx workflow.Context) error {
	if err := workflow.Await(ctx, func() bool {
		return s.commands.Len() > 0 || (s.inFlight == nil && workflow.AllHandlersFinished(ctx))
	}); err != nil {
		return err
	}
	if s.commands.Len() > 0 {
		return nil
	}
	s.closeRun(ctx)
	next := s.in
	carry := s.st
	carry.Runs++
	next.Carry = &carry
	workflow.GetLogger(ctx).Info("continuing as new", "runs", carry.Runs, "total_restarts", carry.TotalRestarts)
	return workflow.NewContinueAsNewError(ctx, SupervisorWorkflowName, next)
}

// closeRun ends a run before it continues as new: the exits reported to it
// and not acted on yet go with it, and the closed run, which keeps its search
// attributes, is marked, so that VigilState='Running' counts replicas, not
// runs (the next run publishes its state first thing).
func (s *supervisor) closeRun(ctx workflow.Context) {
	if o := s.old(); o != nil {
		o.closeRun(ctx, s)
		return
	}
	s.drainExits(ctx)
	if err := workflow.UpsertTypedSearchAttributes(ctx, SearchAttrState.ValueSet(SearchStateContinuedAsNew)); err != nil {
		workflow.GetLogger(ctx).Warn("search attributes not upserted", "error", err)
	}
}

// view renders the state for the "state" query.
func (s *supervisor) view() StateView {
	v := StateView{
		ID:              s.in.ID.Ref(),
		Deployment:      s.in.ID.Deployment,
		Service:         s.in.ID.Service,
		Replica:         s.in.ID.Replica,
		Node:            s.in.Node,
		State:           s.st.State,
		PanicAction:     string(s.in.Policy.Action),
		TotalRestarts:   s.st.TotalRestarts,
		RestartTimes:    make([]string, 0, len(s.st.History.RestartTimes)),
		LastExitCode:    s.st.LastExitCode,
		SupervisedSince: formatTime(s.st.SupervisedSince),
		Events:          append([]Event{}, s.st.Events...),
		Generation:      s.st.Generation,
		LastExitReason:  nonEmpty(string(s.st.LastExitReason)),
		LastExitSignal:  nonEmpty(s.st.LastExitSignal),
	}
	if h := s.in.Spec.Health; h != nil && (h.Liveness != nil || h.Startup != nil) {
		health := string(s.st.Health)
		if health == "" {
			health = string(runtime.HealthStarting)
		}
		v.Health = &health
	}
	for _, t := range s.st.History.RestartTimes {
		v.RestartTimes = append(v.RestartTimes, formatTime(t))
	}
	if s.st.State == StateCrashLoopBackOff && !s.st.NextRestartAt.IsZero() {
		at := formatTime(s.st.NextRestartAt)
		v.NextRestartAt = &at
	}
	if n := s.st.Network; n != nil {
		v.IP, v.Ports = n.IP, append([]runtime.PortMapping(nil), n.Ports...)
	}
	return v
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// nonEmpty is s, or nil (JSON null) when s is empty.
func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// FetchLogs runs the Logs activity on the replica's node and returns its output.
func FetchLogs(ctx workflow.Context, in FetchLogsInput) (string, error) {
	var res activities.LogsResult
	err := workflow.ExecuteActivity(logsOptions(ctx, in.Node, ""), activities.LogsName, activities.LogsInput{ID: in.ID, Tail: in.Tail}).Get(ctx, &res)
	return res.Output, err
}
