package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/lease"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// attempts says how long a start goes on.
type attempts int

const (
	// untilRunning: after a failed attempt, wait and try again.
	untilRunning attempts = iota
	// oneAttempt: a replacement's; the deployment that asked for it is
	// answered with its failure and decides, and the main loop retries.
	oneAttempt
)

// start is the one way the container is started: the first start, a
// restart after a crash or a backoff, an operator's restart or release, and
// a new generation. Until it runs, it waits on a durable timer after the
// activity's own retries, with growing delays, and tries again, keeping the
// state and the last error visible. Operator requests are heard during each
// attempt and between attempts: unsupervise ends the start, a restart takes
// the outcome of the attempt in progress or, between attempts, makes the
// next attempt now. A replacement's one attempt hears nothing: the
// deployment's request that waits on it is the request in flight.
func (s *supervisor) start(ctx workflow.Context, after time.Time, n attempts) (activities.EnsureRunningResult, error) {
	if o := s.old(); o != nil && n == untilRunning {
		return o.start(ctx, s, after)
	}
	delay := startRetryFirst
	why := s.why
	for attempt := 1; ; attempt++ {
		summary := why
		if attempt > 1 {
			summary = fmt.Sprintf("%s, attempt %d", why, attempt)
		}
		res, err := s.attempt(ctx, after, summary, n)
		if errors.Is(err, errUnsupervised) {
			return res, err
		}
		if err == nil {
			if attempt > 1 {
				_ = workflow.UpsertMemo(ctx, map[string]any{replica.MemoStartError: nil})
			}
			s.noteNetwork(res)
			s.started(ctx, res)
			if n == untilRunning {
				s.startWorked(res)
			}
			return res, nil
		}
		if n == oneAttempt {
			_ = workflow.UpsertMemo(ctx, map[string]any{replica.MemoStartError: err.Error()})
			return res, err
		}
		cause := s.failure(err)
		workflow.GetLogger(ctx).Warn("start failed; will retry", "attempt", attempt, "retry_in", delay, "error", err)
		_ = workflow.UpsertMemo(ctx, map[string]any{replica.MemoStartError: cause})
		if w := s.waiting; w != nil {
			s.waiting = nil
			s.finish(w, fmt.Errorf("%s: the start failed again: %s", w.kind, cause))
		}
		if s.st.State == StateRunning {
			s.setState(ctx, StateRestarting)
		}
		if s.rel >= V030 && s.in.Movable() && isNoWorker(err) && s.st.NodeLapsedAt.IsZero() {
			// No worker took the start, and no lapse was heard: the node
			// may never have run (a new replica placed on it) or have been
			// lost before this replica came. Unless its lease was renewed
			// within lost_after, it is lost.
			s.st.NodeLapsedAt = workflow.Now(ctx).Add(-s.in.NodeLostAfter())
			s.armMove(ctx, 0)
		}
		if s.rel >= V030 && s.lostDue() {
			// The node is lost: a movable replica's next attempt is on
			// another node, at once.
			to, err := s.nodeLost(ctx)
			if err != nil {
				return activities.EnsureRunningResult{}, err
			}
			if to != "" {
				s.relocate(ctx, to, ReasonNodeLost)
				why, delay = s.why, startRetryFirst
				continue
			}
		}
		if err := s.continueAsNewWhileFailing(ctx); err != nil {
			return activities.EnsureRunningResult{}, err
		}
		pause := delay
		if s.rel >= V030 {
			pause = s.untilLost(ctx, delay)
		}
		restart, err := s.wait(ctx, pause, fmt.Sprintf("start retry %d in %s", attempt+1, human(pause)), true)
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

// startWorked answers a restart that waited on the start, and forgets the
// health of an earlier task. A replacement leaves both to the start the main
// loop goes back to.
func (s *supervisor) startWorked(res activities.EnsureRunningResult) {
	if w := s.waiting; w != nil {
		s.waiting = nil
		s.finish(w, nil)
	}
	if !res.StartedAt.Equal(s.st.TaskStartedAt) {
		// A new task: its health is unknown until the node's probes say.
		s.st.TaskStartedAt = res.StartedAt
		if s.st.Health != "" {
			s.st.Health = runtime.HealthStarting
		}
	}
}

// attempt is one try of a start, which hears operator requests (activity)
// unless it is a replacement's one attempt.
func (s *supervisor) attempt(ctx workflow.Context, after time.Time, summary string, n attempts) (activities.EnsureRunningResult, error) {
	if n == oneAttempt {
		return s.ensureRunning(ctx, after, summary)
	}
	var res activities.EnsureRunningResult
	err := s.activity(ctx, s.startOptions(ctx, summary), replica.EnsureRunningName,
		s.ensureInput(after), &res,
		"starting the container", s.takeRestart(ctx))
	return res, err
}

// ensureRunning runs one EnsureRunning activity (its own quick retries
// included). Since v0.3.0 it hears unsupervise meanwhile (errUnsupervised)
// and refuses other requests as busy; before, it heard nothing.
func (s *supervisor) ensureRunning(ctx workflow.Context, after time.Time, why string) (activities.EnsureRunningResult, error) {
	var res activities.EnsureRunningResult
	in := s.ensureInput(after)
	if s.rel >= V030 {
		err := s.activity(ctx, s.startOptions(ctx, why), replica.EnsureRunningName, in, &res, "starting the container", nil)
		return res, err
	}
	err := workflow.ExecuteActivity(s.startOptions(ctx, why), replica.EnsureRunningName, in).Get(ctx, &res)
	return res, err
}

// ensureInput asks for the container of this replica's spec to run. Since
// v0.3.0 it carries the stop grace: a running task of another spec is
// stopped and replaced, not adopted.
func (s *supervisor) ensureInput(after time.Time) activities.EnsureRunningInput {
	in := activities.EnsureRunningInput{ID: s.in.ID, Spec: s.replicaSpec(), After: after}
	if s.rel >= V030 {
		in.Grace = s.in.StopGrace
	}
	return in
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
	if s.rel >= V030 && s.in.Movable() {
		// Fenced on its node before it may move (package lease).
		spec.Fence = lease.FenceAfter(s.in.NodeLostAfter())
	}
	return spec
}

// started records what a start left running: exits reported from now on
// must come after res.NotBefore. A task that already exited again (or could
// not start) is an exit to act on, whether or not the node watch reports it.
func (s *supervisor) started(ctx workflow.Context, res activities.EnsureRunningResult) {
	if res.ExitedSince {
		// Nothing was started: the task an earlier attempt started has
		// exited (after the exit being answered), or none could start.
		s.queueExit(ctx, activities.ExitReport{ID: s.in.ID, Exit: res.Exit()})
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
// --volumes does that. Since v0.3.0 it hears unsupervise meanwhile
// (errUnsupervised) and refuses other requests as busy.
func (s *supervisor) stop(ctx workflow.Context, remove, volumes bool, why string) (runtime.Exit, error) {
	var res runtime.Exit
	in := activities.StopInput{ID: s.in.ID, Grace: s.in.StopGrace, Remove: remove, RemoveVolumes: volumes}
	if s.rel >= V030 {
		err := s.activity(ctx, s.controlOptions(ctx, why), replica.StopName, in, &res, "stopping the container", nil)
		return res, err
	}
	err := workflow.ExecuteActivity(s.controlOptions(ctx, why), replica.StopName, in).Get(ctx, &res)
	return res, err
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

// failure is a node activity's failure in a line: no worker on the node, or
// the activity's own error.
func (s *supervisor) failure(err error) string {
	if isNoWorker(err) {
		return s.noWorker()
	}
	return shortError(err)
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
