package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/internal/humanjson"
)

// Every operator request is heard whatever the replica is doing, becomes an
// event, and ends in a state that says what is true.

// unsuperviseStopWait bounds how long unsupervise --stop waits for a worker
// on the node to take the stop: with none, supervision still ends, and the
// answer says the container was not stopped.
const unsuperviseStopWait = 10 * time.Second

// handleRequest carries out an operator command, recorded as an event, and
// reports the result to its update.
func (s *supervisor) handleRequest(ctx workflow.Context, c *command) error {
	switch c.kind {
	case cmdUnsupervise:
		return s.unsupervise(ctx, c)

	case cmdRestart:
		inBackoff := s.st.State == StateCrashLoopBackOff
		s.emitRequest(ctx, EventOperatorRestart, c, inBackoff, "")
		if inBackoff {
			// Ending a backoff early is the episode's one delayed start.
			s.why = "operator restart (ended the crash-loop backoff early)"
			return s.answer(c, s.endBackoff(ctx))
		}
		// Not a crash: nothing is counted, the window is untouched.
		var stopped activities.StopResult
		err := s.activity(ctx, s.controlOptions(ctx, "stop for an operator restart"), activities.StopName,
			activities.StopInput{ID: s.in.ID, Grace: s.in.StopGrace}, &stopped, "stopping the container", nil)
		if errors.Is(err, errUnsupervised) {
			s.finish(c, err)
			return err
		}
		if err != nil {
			s.finish(c, err)
			return nil
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
		err := workflow.ExecuteActivity(s.unsuperviseStopOptions(ctx), activities.StopName,
			activities.StopInput{ID: s.in.ID, Grace: s.in.StopGrace, Remove: true, RemoveVolumes: c.volumes}).Get(ctx, nil)
		var timeout *temporal.TimeoutError
		switch {
		case errors.As(err, &timeout) && timeout.TimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START:
			note = fmt.Sprintf("container NOT stopped: no vigil-worker on node %s took the stop within %s; stop it there once a worker runs", s.in.Node, human(unsuperviseStopWait))
		case err != nil:
			note = "container NOT stopped: " + shortError(err)
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

// startHeard is start with operator requests heard
// during the activity and between retries. Unsupervise cancels the start; a
// restart takes the outcome of the attempt in progress, or, between
// attempts, makes the next attempt now.
func (s *supervisor) startHeard(ctx workflow.Context, after time.Time) (activities.EnsureRunningResult, error) {
	delay := startRetryFirst
	why := s.why
	for attempt := 1; ; attempt++ {
		summary := why
		if attempt > 1 {
			summary = fmt.Sprintf("%s, attempt %d", why, attempt)
		}
		var res activities.EnsureRunningResult
		err := s.activity(ctx, s.startOptions(ctx, summary), activities.EnsureRunningName,
			activities.EnsureRunningInput{ID: s.in.ID, Spec: s.replicaSpec(), After: after}, &res,
			"starting the container", s.takeRestart(ctx))
		if errors.Is(err, errUnsupervised) {
			return res, err
		}
		if err == nil {
			if attempt > 1 {
				_ = workflow.UpsertMemo(ctx, map[string]any{MemoStartError: nil})
			}
			s.noteNetwork(res)
			s.started(ctx, res)
			if w := s.waiting; w != nil {
				s.waiting = nil
				s.finish(w, nil)
			}
			return res, nil
		}
		cause := shortError(err)
		workflow.GetLogger(ctx).Warn("start failed; will retry", "attempt", attempt, "retry_in", delay, "error", err)
		_ = workflow.UpsertMemo(ctx, map[string]any{MemoStartError: cause})
		if w := s.waiting; w != nil {
			s.waiting = nil
			s.finish(w, fmt.Errorf("%s: the start failed again: %s", w.kind, cause))
		}
		if s.st.State == StateRunning {
			s.setState(ctx, StateRestarting)
		}
		if err := s.continueAsNewWhileFailing(ctx); err != nil {
			return activities.EnsureRunningResult{}, err
		}
		restart, err := s.wait(ctx, delay, fmt.Sprintf("start retry %d in %s", attempt+1, human(delay)), true)
		if err != nil {
			return activities.EnsureRunningResult{}, err
		}
		if restart != nil {
			s.emitRequest(ctx, EventOperatorRestart, restart, false, "retried the failing start at once")
			s.waiting = restart
			why = "start retried now by an operator restart"
			continue
		}
		delay = min(delay*2, startRetryMax)
	}
}

// continueAsNewWhileFailing ends the run, with the start still to do, when
// it is due to continue as new (a day old, or the server suggests it): a
// start that keeps failing adds about 13 events per attempt, 3 700 a day at
// the 5 min cap, and one run must not grow until Temporal's history limit
// ends supervision. The next run's main loop takes the start up: Pending is
// the first start, Restarting the restart after a crash or a backoff. Not
// while an operator's request waits on this start: the run cannot end before
// its update is answered.
func (s *supervisor) continueAsNewWhileFailing(ctx workflow.Context) error {
	due := (s.canDue != nil && s.canDue.IsReady()) || workflow.GetInfo(ctx).GetContinueAsNewSuggested()
	if !due || s.inFlight != nil || s.waiting != nil ||
		(s.st.State != StatePending && s.st.State != StateRestarting) {
		return nil
	}
	return s.continueAsNew(ctx)
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
			if err := s.handle(ctx, w.cmd); err != nil || w.cmd.reconf.Replace {
				return nil, err
			}
			continue
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
	s.busyDoing = doing
	defer func() { s.busyDoing = "" }()
	f := workflow.ExecuteActivity(actCtx, name, in)
	for {
		w := s.waitFor(ctx, f, false)
		switch {
		case w.ready:
			return f.Get(ctx, out)
		case w.cmd.kind == cmdUnsupervise:
			cancel()
			return s.handle(ctx, w.cmd)
		case take != nil && take(w.cmd):
		default:
			s.finish(w.cmd, fmt.Errorf("%s: the replica is busy %s; try again when it is done", w.cmd.kind, doing))
		}
	}
}

// emitRequest records an operator request as an event.
func (s *supervisor) emitRequest(ctx workflow.Context, typ EventType, c *command, endedBackoff bool, note string) {
	s.emitEvent(ctx, Event{Type: typ, EndedBackoff: endedBackoff, RequestID: c.requestID, Note: note})
}

// human writes a duration the way a deployment file does: 60s, 5m, 1h30m.
func human(d time.Duration) string { return humanjson.Format(d) }

func exitText(code *int) string {
	if code == nil {
		return "unknown"
	}
	return fmt.Sprint(*code)
}

// maxStartError keeps a recorded start error to about one line.
const maxStartError = 300

// shortError is an activity failure's cause, once: the SDK's wrapper names
// the activity, and an application error's text repeats its cause.
func shortError(err error) string {
	msg := err.Error()
	var appErr *temporal.ApplicationError
	var timeout *temporal.TimeoutError
	switch {
	case errors.As(err, &appErr):
		msg = appErr.Message()
	case errors.As(err, &timeout):
		msg = "timed out (" + strings.ToLower(strings.TrimPrefix(timeout.TimeoutType().String(), "TIMEOUT_TYPE_")) + ")"
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if r := []rune(msg); len(r) > maxStartError {
		msg = string(r[:maxStartError-1]) + "…"
	}
	return msg
}
