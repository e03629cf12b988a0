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

type commandKind string

const (
	cmdRelease     commandKind = replica.UpdateRelease
	cmdRestart     commandKind = replica.UpdateRestart
	cmdRollover    commandKind = replica.UpdateRollover
	cmdUnsupervise commandKind = replica.UpdateUnsupervise
	cmdReconfigure commandKind = replica.UpdateReconfigure
	cmdShutdown    commandKind = replica.UpdateShutdown
	cmdMove        commandKind = replica.UpdateMove
)

// command is an operator request handed from an update handler to the main loop.
type command struct {
	kind      commandKind
	stop      bool // unsupervise only
	requestID string
	// reconf is the reconfigure request; result its answer.
	reconf *ReconfigureRequest
	result ReconfigureResult
	// move is the move request (a drain); its answer is result too.
	move *MoveRequest
	done bool
	err  error
	note string // what was done, for an operator request's result
	// volumes (unsupervise with stop only) also deletes the replica's
	// named volumes.
	volumes bool
	// notStopped: unsupervise --stop could not stop the container.
	notStopped bool
	// by (shutdown only) is the replica whose exit shut the service down.
	by string
}

func (s *supervisor) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, replica.QueryState, func() (StateView, error) {
		return s.view(), nil
	}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandler(ctx, replica.QueryConfig, func() (SupervisionInput, error) {
		return s.in, nil
	}); err != nil {
		return err
	}
	// Rollover is registered in the runs of every release: registering
	// issues no command, so any run can be moved to a new run, which reads
	// the current release, without replay trouble.
	for _, err := range []error{
		operatorUpdate(ctx, s, replica.UpdateRelease, func(r ReleaseRequest) *command {
			return &command{kind: cmdRelease, requestID: r.RequestID}
		}, nil),
		operatorUpdate(ctx, s, replica.UpdateRestart, func(r RestartRequest) *command {
			return &command{kind: cmdRestart, requestID: r.RequestID}
		}, nil),
		operatorUpdate(ctx, s, replica.UpdateRollover, func(r RolloverRequest) *command {
			return &command{kind: cmdRollover, requestID: r.RequestID}
		}, nil),
		operatorUpdate(ctx, s, replica.UpdateUnsupervise, func(r UnsuperviseRequest) *command {
			return &command{kind: cmdUnsupervise, stop: r.Stop, volumes: r.Volumes, requestID: r.RequestID}
		}, func(r UnsuperviseRequest) error {
			if r.Volumes && !r.Stop {
				return errors.New("unsupervise: deleting volumes needs stop too (--stop --volumes): a running container would keep writing to them")
			}
			return nil
		}),
	} {
		if err != nil {
			return err
		}
	}
	return s.registerDeploymentHandlers(ctx)
}

// operatorUpdate registers the update name of an operator's request: cmd
// makes its command; check, if set, refuses a malformed request before
// validate.
func operatorUpdate[R any](ctx workflow.Context, s *supervisor, name string, cmd func(R) *command, check func(R) error) error {
	return workflow.SetUpdateHandlerWithOptions(ctx, name,
		func(ctx workflow.Context, req R) (UpdateResult, error) { return s.submit(ctx, cmd(req)) },
		workflow.UpdateHandlerOptions{Validator: func(req R) error {
			if check != nil {
				if err := check(req); err != nil {
					return err
				}
			}
			return s.validate(cmd(req))
		}})
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
		return temporal.NewApplicationError(fmt.Sprintf("%s: another request (%s) is in progress; retry when it has finished", kind, s.inFlight.kind), replica.ErrTypeBusy)
	}
	if s.busyDoing != "" && (kind == cmdReconfigure || kind == cmdShutdown) && s.rel < V030 {
		return temporal.NewApplicationError(fmt.Sprintf("%s: the replica is busy %s; try again when it is done", kind, s.busyDoing), replica.ErrTypeBusy)
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
	case cmdMove:
		return s.refuseMove()
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
	return UpdateResult{RequestID: c.requestID, Note: c.note, NotStopped: c.notStopped}, c.err
}

func (s *supervisor) finish(c *command, err error) {
	c.done, c.err = true, err
	if s.inFlight == c {
		s.inFlight = nil
	}
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
	case cmdMove:
		return s.moveAway(ctx, c)
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
	if errors.Is(err, errUnsupervised) {
		s.finish(c, fmt.Errorf("%s: supervision ended (unsupervised) before it was done: %w", c.kind, err))
		return err
	}
	s.finish(c, err)
	return nil
}

// startFor starts the container for an operator's request and answers it.
// Not a crash: nothing is counted.
func (s *supervisor) startFor(ctx workflow.Context, c *command, after time.Time) error {
	s.setState(ctx, StateRestarting)
	_, err := s.start(ctx, after, untilRunning)
	if err == nil {
		s.setState(ctx, StateRunning)
	}
	if errors.Is(err, errSuperseded) {
		c.note = fmt.Sprintf("the deployment's request taken while the start was failing decided instead: the replica is %s", s.st.State)
		err = nil
	}
	return s.answer(c, err)
}

// release starts an Isolated or Shutdown replica again: the operator takes
// responsibility, so the crash window starts afresh.
func (s *supervisor) release(ctx workflow.Context, c *command) error {
	s.st.History = policy.History{}
	s.st.ShutdownBy = ""
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

// Every operator request is heard whatever the replica is doing, becomes an
// event, and ends in a state that says what is true.

// unsuperviseStopWait bounds how long unsupervise --stop waits for a worker
// on the node to take the stop: with none, supervision still ends, and the
// answer says the container was not stopped.
const unsuperviseStopWait = 5 * time.Second

// handleRequest carries out an operator command, recorded as an event, and
// reports the result to its update.
func (s *supervisor) handleRequest(ctx workflow.Context, c *command) error {
	switch c.kind {
	case cmdUnsupervise:
		return s.unsupervise(ctx, c)

	case cmdRestart:
		inBackoff := s.st.State == StateCrashLoopBackOff
		if !inBackoff && s.rel >= V030 {
			// A crash reported just before the restart is decided first.
			s.drainExits(ctx)
			if e, ok := s.nextExit(); ok {
				s.emitRequest(ctx, EventOperatorRestart, c, false, "the container had already exited")
				return s.crashBeforeRestart(ctx, c, e.Exit)
			}
		}
		s.emitRequest(ctx, EventOperatorRestart, c, inBackoff, "")
		if inBackoff {
			// Ending a backoff early is the episode's one delayed start.
			s.why = "operator restart (ended the crash-loop backoff early)"
			if s.rel < V030 {
				return s.answer(c, s.endBackoff(ctx)) // counted it as a restart
			}
			// An operator's restart, not a crash's: nothing is counted.
			s.st.NextRestartAt = time.Time{}
			return s.startFor(ctx, c, s.st.LastExitAt)
		}
		// Not a crash: nothing is counted, the window is untouched.
		var stopped runtime.Exit
		err := s.activity(ctx, s.controlOptions(ctx, "stop for an operator restart"), replica.StopName,
			activities.StopInput{ID: s.in.ID, Grace: s.in.StopGrace}, &stopped, "stopping the container", nil)
		if errors.Is(err, errUnsupervised) {
			s.finish(c, err)
			return err
		}
		if err != nil {
			s.finish(c, err)
			return nil
		}
		if s.rel >= V030 && stopped.ExitedBeforeStop {
			return s.crashBeforeRestart(ctx, c, stopped)
		}
		s.why = "operator restart"
		return s.startFor(ctx, c, stopped.ExitedAt)

	case cmdRelease:
		s.emitRequest(ctx, EventReleased, c, false, "")
		s.why = fmt.Sprintf("start after release (was %s)", s.st.State)
		return s.release(ctx, c)
	}
	return s.unknownRequest(c)
}

// crashBeforeRestart answers an operator's restart that came just after a
// crash (its report came first, or the stop found the task exited): the
// crash is decided by the policy like any other, so a shutdown or isolate
// rule still applies, and that decision answers the restart.
func (s *supervisor) crashBeforeRestart(ctx workflow.Context, c *command, exit runtime.Exit) error {
	exit.ExitedBeforeStop = false
	err := s.decideExit(ctx, exit)
	c.note = fmt.Sprintf("the container had already exited (code %d) and its policy decided: %s", exit.ExitCode, s.st.State)
	return s.answer(c, err)
}

// unsupervise ends supervision. With stop, the container is stopped and
// removed (its log is kept) if a worker on the node takes the stop soon; if
// none does, supervision ends anyway and the answer says what was not done.
func (s *supervisor) unsupervise(ctx workflow.Context, c *command) error {
	note := "container left as it was"
	if c.stop {
		note = "container stopped and removed; its log is kept"
		if c.volumes {
			note = "container stopped and removed, its named volumes deleted; its log is kept"
		}
		stop := activities.StopInput{ID: s.in.ID, Grace: s.in.StopGrace, Remove: true, RemoveVolumes: c.volumes}
		err := workflow.ExecuteActivity(s.unsuperviseStopOptions(ctx), replica.StopName, stop).Get(ctx, nil)
		s.noteNode(ctx, err)
		switch {
		case isNoWorker(err):
			note = fmt.Sprintf("container NOT stopped: no vigil-worker on node %s took the stop within %s; %s", s.in.Node, human(unsuperviseStopWait), stopLater(s.in.Node))
		case err != nil:
			note = "container NOT stopped: " + shortError(err)
		}
		if err != nil && s.rel >= V030 {
			c.notStopped = true
			if err := workflow.UpsertMemo(ctx, map[string]any{replica.MemoStopPending: stop}); err != nil {
				workflow.GetLogger(ctx).Warn("pending stop not recorded in memo", "error", err)
			}
		}
	}
	c.note = note
	s.setState(ctx, StateUnsupervised)
	s.emitRequest(ctx, EventUnsupervised, c, false, note)
	s.details(ctx, "unsupervised: "+note)
	if s.waiting != nil && s.waiting != c {
		s.finish(s.waiting, fmt.Errorf("%s: supervision ended (unsupervised) before it was done", s.waiting.kind))
		s.waiting = nil
	}
	s.finish(c, nil)
	return errUnsupervised
}

// stopLater says how a container that unsupervise --stop could not reach is
// removed once its node has a worker again: the run keeps the stop (memo
// replica.MemoStopPending), and the node's next watch does it.
func stopLater(node string) string {
	return fmt.Sprintf("the next worker on node %s stops and removes it when it starts (its log says so)", node)
}

// takeRestart lets a restart request that arrives during a start wait for
// that start's outcome (one at a time; the validator joins repetitions).
func (s *supervisor) takeRestart(ctx workflow.Context) func(*command) bool {
	return func(c *command) bool {
		if c.kind != cmdRestart || s.waiting != nil {
			return false
		}
		s.emitRequest(ctx, EventOperatorRestart, c, false, "answered by the start in progress")
		s.waiting = c
		return true
	}
}

// wait waits on a durable timer before a start is tried again. Unsupervise
// ends it (errUnsupervised); a reconfigure is carried out; with restarts, a
// restart ends it early and is returned for the caller to carry out; other
// requests are refused, since the replica is not ready for them.
func (s *supervisor) wait(ctx workflow.Context, d time.Duration, why string, restarts bool) (*command, error) {
	s.details(ctx, why)
	timerCtx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	timer := workflow.NewTimerWithOptions(timerCtx, d, workflow.TimerOptions{Summary: why})
	for {
		w := s.waitFor(ctx, timer, false)
		switch {
		case w.ready:
			return nil, nil
		case w.cmd.kind == cmdUnsupervise:
			return nil, s.handle(ctx, w.cmd)
		case w.cmd.kind == cmdRestart && restarts:
			return w.cmd, nil
		case w.cmd.kind == cmdReconfigure:
			// A new generation may be just what makes the start work (a
			// rollback of a bad image): take it now.
			if err := s.handle(ctx, w.cmd); err != nil || !w.cmd.reconf.Replace {
				if err != nil {
					return nil, err
				}
				continue
			}
			if s.rel >= V030 {
				// The replacement made the start: it is not a restart.
				return nil, errSuperseded
			}
			return nil, nil
		case w.cmd.kind == cmdShutdown && s.rel >= V030:
			// The service is shut down: no start to retry.
			if err := s.handle(ctx, w.cmd); err != nil {
				return nil, err
			}
			return nil, errSuperseded
		}
		hint := "try again later"
		if restarts {
			hint = "use restart to retry it now"
		}
		s.finish(w.cmd, fmt.Errorf("%s: the replica is waiting to retry a failed start; %s", w.cmd.kind, hint))
	}
}

// activity runs an activity and waits for it while hearing operator
// requests: unsupervise cancels the activity and ends supervision
// (errUnsupervised); take may keep another request; the rest are refused
// as busy.
func (s *supervisor) activity(ctx, actCtx workflow.Context, name string, in, out any, doing string, take func(*command) bool) error {
	actCtx, cancel := workflow.WithCancel(actCtx)
	defer cancel()
	f := workflow.ExecuteActivity(actCtx, name, in)
	if err := s.hear(ctx, f, doing, take, cancel); err != nil {
		return err
	}
	err := f.Get(ctx, out)
	s.noteNode(ctx, err)
	return err
}

// hear waits until f is ready while hearing operator requests: unsupervise
// calls cancel (what was awaited is dropped) and ends supervision
// (errUnsupervised); take may keep another request; the rest are refused
// as busy. It does not Get f.
//
// Since v0.3.0 the deployment's requests (reconfigure, shutdown) are
// deferred instead: handed back to the main loop once f is ready, so that
// one arriving in the same workflow task as the start is neither refused
// (untyped, and recorded under its update ID) nor answered before it is done.
func (s *supervisor) hear(ctx workflow.Context, f workflow.Future, doing string, take func(*command) bool, cancel func()) error {
	s.busyDoing = doing
	var deferred []*command
	defer func() {
		s.busyDoing = ""
		for _, c := range deferred {
			if !s.commands.SendAsync(c) {
				s.finish(c, temporal.NewApplicationError(fmt.Sprintf("%s: too many requests waiting; retry", c.kind), replica.ErrTypeBusy))
			}
		}
	}()
	for {
		w := s.waitFor(ctx, f, false)
		switch {
		case w.ready:
			return nil
		case w.cmd.kind == cmdUnsupervise:
			cancel()
			err := s.handle(ctx, w.cmd)
			if errors.Is(err, errUnsupervised) {
				// The run ends: the deferred requests are answered, not left.
				for _, c := range deferred {
					s.finish(c, fmt.Errorf("%s: supervision ended (unsupervised) before it was done", c.kind))
				}
				deferred = nil
			}
			return err
		case take != nil && take(w.cmd):
		case s.rel >= V030 && (w.cmd.kind == cmdReconfigure || w.cmd.kind == cmdShutdown):
			deferred = append(deferred, w.cmd)
		default:
			s.finish(w.cmd, fmt.Errorf("%s: the replica is busy %s; try again when it is done", w.cmd.kind, doing))
		}
	}
}

// noteNode records what a node activity's outcome says of the node's
// worker: one took it (Ready), or none did in time (NoWorker). Other
// failures (a worker took it) and cancellations say Ready or nothing.
func (s *supervisor) noteNode(ctx workflow.Context, err error) {
	st := NodeReady
	switch {
	case isNoWorker(err):
		st = NodeNoWorker
	case temporal.IsCanceledError(err):
		return
	}
	if s.st.NodeState == st {
		return
	}
	s.st.NodeState, s.st.NodeSince = st, workflow.Now(ctx)
	workflow.GetLogger(ctx).Info("node worker", "node", s.in.Node, "state", string(st))
}

// noWorker says that no worker on the node took an activity, and since when.
func (s *supervisor) noWorker() string {
	return fmt.Sprintf("no worker on node %s (since %s)", s.in.Node, s.st.NodeSince.UTC().Format(time.RFC3339))
}

// emitRequest records an operator request as an event.
func (s *supervisor) emitRequest(ctx workflow.Context, typ EventType, c *command, endedBackoff bool, note string) {
	s.emitEvent(ctx, Event{Type: typ, EndedBackoff: endedBackoff, RequestID: c.requestID, Note: note})
}
