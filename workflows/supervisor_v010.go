package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// The runs started by v0.1.0, supervised as v0.1.0 supervised them. Nothing
// else names this file: retiring v0.1.0 is deleting it, its test file and
// its recorded histories (README, Retiring a version branch).

func init() { releases[V010] = v010{} }

type v010 struct{}

// open publishes the state; there is no Pending state, no timer to continue
// as new and no health to follow.
func (v010) open(ctx workflow.Context, s *supervisor) { s.publishState(ctx) }

// validate refuses a restart while a start is retried: the retry loop does
// not hear it.
func (v010) validate(s *supervisor, c *command) error {
	if c.kind == cmdRestart && s.st.State == StateRestarting {
		return errRestartNotApplicable(s.st.State)
	}
	return nil
}

// watch runs a WaitForExit activity on the node for as long as the
// container runs.
func (v v010) watch(ctx workflow.Context, s *supervisor) error {
	s.details(ctx, "watching: container running")
	watchCtx, cancel := workflow.WithCancel(ctx)
	defer cancel()
	future := workflow.ExecuteActivity(s.watchOptions(watchCtx), replica.WaitForExitName,
		activities.WaitForExitInput{ID: s.in.ID, PollInterval: s.in.Policy.PollInterval})
	w := s.waitFor(ctx, future, false)
	if w.cmd != nil {
		cancel()
		return s.handle(ctx, w.cmd)
	}
	var exit runtime.Exit
	if err := future.Get(ctx, &exit); err != nil {
		// The watch retries forever on its own; reaching here means a
		// permanent failure. Keep supervising: look again after a pause.
		workflow.GetLogger(ctx).Error("watch failed; retrying", "error", err)
		return v.sleep(ctx, s, startRetryFirst, "watch failed; looking again")
	}
	return s.onExit(ctx, runtime.Exit{ExitCode: exit.ExitCode, ExitedAt: exit.ExitedAt, Reason: exit.Reason})
}

// handle carries out an operator request without recording it as an event.
func (v010) handle(ctx workflow.Context, s *supervisor, c *command) error {
	switch c.kind {
	case cmdUnsupervise:
		if c.stop {
			if _, err := s.stop(ctx, c.volumes, c.volumes, ""); err != nil {
				s.finish(c, err)
				return nil
			}
		}
		s.details(ctx, "unsupervised")
		s.finish(c, nil)
		return errUnsupervised
	case cmdRestart:
		if s.st.State == StateCrashLoopBackOff {
			return s.answer(c, s.endBackoff(ctx))
		}
		stopped, err := s.stop(ctx, false, false, "")
		if err != nil {
			s.finish(c, err)
			return nil
		}
		return s.startFor(ctx, c, stopped.ExitedAt)
	case cmdRelease:
		return s.release(ctx, c)
	}
	return s.unknownRequest(c)
}

// start tries until the container runs, pausing on a durable timer between
// attempts; only unsupervise and reconfigure are heard meanwhile.
func (v v010) start(ctx workflow.Context, s *supervisor, after time.Time) (activities.EnsureRunningResult, error) {
	delay := startRetryFirst
	for attempt := 1; ; attempt++ {
		res, err := s.ensureRunning(ctx, after, "")
		if err == nil {
			if attempt > 1 {
				_ = workflow.UpsertMemo(ctx, map[string]any{replica.MemoStartError: nil})
			}
			return res, nil
		}
		workflow.GetLogger(ctx).Warn("start failed; will retry", "attempt", attempt, "retry_in", delay, "error", err)
		_ = workflow.UpsertMemo(ctx, map[string]any{replica.MemoStartError: err.Error()})
		if s.st.State == StateRunning {
			s.setState(ctx, StateRestarting)
		}
		if err := v.sleep(ctx, s, delay, fmt.Sprintf("start failed (attempt %d); retrying in %s", attempt, delay)); err != nil {
			return activities.EnsureRunningResult{}, err
		}
		delay = min(delay*2, startRetryMax)
	}
}

// sleep waits on a durable timer; a restart is refused meanwhile.
func (v010) sleep(ctx workflow.Context, s *supervisor, d time.Duration, why string) error {
	_, err := s.wait(ctx, d, why, false)
	return err
}

// isolate runs the Isolate activity without hearing requests meanwhile.
func (v010) isolate(ctx workflow.Context, s *supervisor, in activities.IsolateInput) error {
	if err := workflow.ExecuteActivity(s.controlOptions(ctx, ""), replica.IsolateName, in).Get(ctx, nil); err != nil {
		workflow.GetLogger(ctx).Error("isolate hook failed", "error", err)
	}
	return nil
}

// decide decides by the policy without rules or exponential backoff, and
// records no exit reason.
func (v010) decide(ctx workflow.Context, s *supervisor, exit runtime.Exit) policy.Decision {
	p := s.in.Policy
	p.Rules, p.Exponential = nil, nil
	return p.Decide(s.st.History, exit, workflow.Now(ctx))
}

// shutDownService: there is no deployment workflow to tell.
func (v010) shutDownService(workflow.Context, *supervisor, int) {}

// closeRun: the closed run keeps its search attributes as they were. The
// node watch reports exits to these runs too (they do not read them): the
// next run, of the current release, acts on those still current.
func (v010) closeRun(ctx workflow.Context, s *supervisor) { s.drainExits(ctx) }
