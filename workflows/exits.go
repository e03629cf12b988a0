package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/metrics"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// followHealth records the probes' verdicts the node signals. Only the
// container that runs now has a health: reports in other states are stale.
func (s *supervisor) followHealth(ctx workflow.Context) {
	ch := workflow.GetSignalChannel(ctx, replica.SignalHealth)
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
				workflow.GetLogger(ctx).Info("health changed", "from", string(s.st.Health), "to", string(r.Status), "detail", r.Detail)
				s.st.Health = r.Status
			}
			if r.Detail != "" && s.rel >= V030 {
				s.st.HealthDetail = r.Detail
			}
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
			return s.decideExit(ctx, e.Exit)
		}
		var cmd *command
		received, due, lost := false, false, false
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(s.exits, func(c workflow.ReceiveChannel, _ bool) {
			s.takeReport(ctx, c)
			received = true
		})
		sel.AddReceive(s.commands, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &cmd) })
		if s.canDue != nil {
			sel.AddFuture(s.canDue, func(workflow.Future) { due = true })
		}
		if s.rel >= V030 {
			sel.AddReceive(s.leases, func(c workflow.ReceiveChannel, _ bool) {
				s.takeLeaseNotice(ctx, c)
				received = true
			})
			if s.moveDue != nil {
				sel.AddFuture(s.moveDue, func(workflow.Future) { lost = true })
			}
		}
		sel.Select(ctx)
		if cmd != nil {
			return s.handle(ctx, cmd)
		}
		if lost {
			to, err := s.nodeLost(ctx)
			if err != nil || to == "" {
				return err
			}
			return s.moveTo(ctx, to, ReasonNodeLost)
		}
		if due && !received {
			// Time for a new run; exits reported meanwhile go with it.
			return nil
		}
		if received && len(s.st.PendingExits) == 0 && s.rel >= V030 && s.shouldContinueAsNew(ctx) {
			// Every signal wake-up checks: reports that change nothing (a
			// new watch's repeats) grow history too.
			return nil
		}
	}
}

// takeReport takes one exit report from c: kept if current (queueExit);
// a v0.3.0 run counts the others (repeats, an older task's, corrupt ones)
// towards continue-as-new.
func (s *supervisor) takeReport(ctx workflow.Context, c workflow.ReceiveChannel) {
	var e activities.ExitReport
	queued := len(s.st.PendingExits)
	if receiveSignal(c, &e) {
		if s.busyDoing != "" {
			// The activity in flight may be starting the very task this
			// report names (one that exits at once): judge it once the
			// activity is done (nextExit), not against the task before.
			s.keepExit(e)
		} else {
			s.queueExit(ctx, e)
		}
	}
	if s.rel >= V030 && len(s.st.PendingExits) == queued {
		s.ignoredThisRun++
	}
}

// decideExit acts on an exit of the current task.
func (s *supervisor) decideExit(ctx workflow.Context, exit runtime.Exit) error {
	if exit.StartedAt.IsZero() {
		exit.StartedAt = s.st.TaskStartedAt
	}
	return s.onExit(ctx, exit)
}

// awaitingExit is called each time a run begins to wait for an exit: the
// tests' stand-in for the node watch counts watches with it.
var awaitingExit = func() {}

// current reports whether an exit is of the task the replica last started
// and not handled yet. Since v0.3.0 a report that names its task (the task's
// start) is current if that task is the replica's, whatever the clocks say:
// an adopted task's WatchAfter is later than its start, and a node clock
// stepped back dates a later exit early. Otherwise each exit is identified
// by its time: the node watch may report one twice (a new watch reports what
// it finds), and an exit of an older task (an operator's stop, a crash
// already answered) comes before the current task's WatchAfter.
func (s *supervisor) current(e activities.ExitReport) bool {
	if s.rel >= V030 && e.ID != (replica.ID{}) && e.ID != s.in.ID {
		return false // about another replica: a misdirected signal
	}
	if s.rel >= V030 && e.Node != "" && e.Node != s.in.Node {
		return false // from the node the replica left
	}
	if e.PID != 0 && s.st.TaskPID != 0 && e.PID != s.st.TaskPID {
		// Another task: e.g. a half-made one the start killed, whose exit
		// the runtime may time after the start began.
		return false
	}
	if s.rel >= V030 && s.st.LastExitAt.After(s.st.WatchAfter) && (e.PID != 0 && e.PID == s.st.TaskPID ||
		!e.StartedAt.IsZero() && e.StartedAt.Equal(s.st.TaskStartedAt)) {
		// The exit of this task was acted on already, and a task exits
		// once: this is another report of it (containerd reports an exited
		// task again, SIGKILLed, when a start deletes it), not a crash.
		return false
	}
	if s.rel >= V030 && !e.StartedAt.IsZero() && !s.st.TaskStartedAt.IsZero() {
		return e.StartedAt.Equal(s.st.TaskStartedAt) && !e.ExitedAt.Equal(s.st.LastExitAt)
	}
	return e.ExitedAt.After(s.st.WatchAfter) && e.ExitedAt.After(s.st.LastExitAt)
}

// queueExit keeps a reported exit of the current task until it is acted on.
func (s *supervisor) queueExit(ctx workflow.Context, e activities.ExitReport) {
	if !s.current(e) {
		workflow.GetLogger(ctx).Debug("exit report ignored: an older task or already handled", "exited_at", e.ExitedAt)
		return
	}
	s.keepExit(e)
}

// keepExit keeps a report until nextExit judges it, once each, within
// maxPendingExits: a stale report gives way to a new one; when all are
// current (all of the one current task), the earliest is acted on and the
// next start makes the rest stale, so the new one is dropped.
func (s *supervisor) keepExit(e activities.ExitReport) {
	for _, p := range s.st.PendingExits {
		if p.ExitedAt.Equal(e.ExitedAt) {
			return
		}
	}
	if s.rel >= V030 && len(s.st.PendingExits) >= maxPendingExits {
		i := slices.IndexFunc(s.st.PendingExits, func(p activities.ExitReport) bool { return !s.current(p) })
		if i < 0 {
			return
		}
		s.st.PendingExits = slices.Delete(s.st.PendingExits, i, i+1)
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
func (s *supervisor) decide(ctx workflow.Context, exit runtime.Exit) policy.Decision {
	if o := s.old(); o != nil {
		return o.decide(ctx, s, exit)
	}
	p := s.in.Policy
	p.Seed = idHash(workflow.GetInfo(ctx).WorkflowExecution.ID)
	d := p.Decide(s.st.History, exit, workflow.Now(ctx))
	s.st.LastExitReason = exit.Label()
	s.st.LastExitSignal = exit.Signal
	if s.rel >= V030 {
		s.st.LastRule = nil
		if d.Rule != nil {
			s.st.LastRule = &RuleRef{Index: *d.Rule, Text: p.Rules[*d.Rule].String()}
		}
	}
	if s.st.Health != "" {
		s.st.Health = runtime.HealthStarting // the next task starts over
	}
	return d
}

// onExit asks the policy what an exit means and carries the decision out.
func (s *supervisor) onExit(ctx workflow.Context, exit runtime.Exit) error {
	s.exitsThisRun++
	if s.rel >= V030 && exit.Cause == runtime.ExitFenced && s.in.Movable() {
		return s.restartFenced(ctx, exit)
	}
	d := s.decide(ctx, exit)
	s.st.History = d.History
	if s.rel >= V030 {
		s.st.History.RestartTimes = newest(s.st.History.RestartTimes, s.in.Policy.MaxRestarts+1)
	}
	code := exit.ExitCode
	s.st.LastExitCode = &code
	s.st.LastExitAt = exit.ExitedAt
	workflow.GetLogger(ctx).Info("container exited",
		"exit_code", exit.ExitCode, "cause", string(exit.Cause), "signal", exit.Signal, "reason", exit.Reason,
		"decision", string(d.Outcome), "why", d.Reason, "backoff_episode", d.Episode)
	s.metric(ctx, string(exit.Label())).Counter(metrics.ContainerExits).Inc(1)

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
		if s.rel >= V030 {
			s.st.ShutdownBy = s.in.ID.Ref()
		}
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

// restartFenced starts again, in place, a container its node's fence
// ended while the node's lease lapsed: the lease came back before the
// replica moved (an exit reported from a node it left is not current).
// Not a crash: the policy is not asked, and it is neither counted nor
// backed off (since v0.3.0).
func (s *supervisor) restartFenced(ctx workflow.Context, exit runtime.Exit) error {
	code := exit.ExitCode
	s.st.LastExitCode = &code
	s.st.LastExitAt = exit.ExitedAt
	s.st.LastExitReason, s.st.LastExitSignal = exit.Label(), ""
	workflow.GetLogger(ctx).Info("container fenced on its node; its lease is back: restarting it there", "node", s.in.Node, "exited_at", exit.ExitedAt)
	s.metric(ctx, string(exit.Label())).Counter(metrics.ContainerExits).Inc(1)
	s.emit(ctx, EventFenced, &code)
	s.why = "restart after the node's fence (its lease lapsed, then came back)"
	s.setState(ctx, StateRestarting)
	s.details(ctx, "restarting after the node's fence")
	if _, err := s.start(ctx, s.st.LastExitAt, untilRunning); err != nil {
		return err
	}
	s.setState(ctx, StateRunning)
	return nil
}

// restartNow starts the container after a crash and counts the restart.
func (s *supervisor) restartNow(ctx workflow.Context) error {
	s.details(ctx, "restarting after a crash")
	started, err := s.start(ctx, s.st.LastExitAt, untilRunning)
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
	if _, err := s.start(ctx, s.st.LastExitAt, untilRunning); err != nil {
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

// isolate labels the container and calls the webhook. The replica is
// isolated either way (it will not be restarted), so a failure is only
// logged; the error returned is only errUnsupervised (an unsupervise request
// interrupts the activity).
func (s *supervisor) isolate(ctx workflow.Context, code int) error {
	in := activities.IsolateInput{ID: s.in.ID, ExitCode: code, Webhook: s.in.IsolateWebhook}
	if o := s.old(); o != nil {
		return o.isolate(ctx, s, in)
	}
	err := s.activity(ctx, s.controlOptions(ctx, fmt.Sprintf("isolate after exit %d", code)), replica.IsolateName, in, nil, "isolating the container", nil)
	if errors.Is(err, errUnsupervised) {
		return err
	}
	if err != nil {
		workflow.GetLogger(ctx).Error("isolate hook failed", "error", err)
	}
	return nil
}

func exitText(code *int) string {
	if code == nil {
		return "unknown"
	}
	return fmt.Sprint(*code)
}

// newest keeps the last n of times: the policy counts at most MaxRestarts+1
// crashes in its window, and a node clock stepped back would otherwise keep
// "future" crashes in the window for ever.
func newest(times []time.Time, n int) []time.Time {
	if len(times) <= n {
		return times
	}
	return append([]time.Time(nil), times[len(times)-n:]...)
}
