package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/spec"
)

// What the deployment workflow asks of a replica: a new generation of its
// config (reconfigure) and a service-wide shutdown. Both are updates, so a
// request that cannot apply is refused before it reaches history.

func (s *supervisor) registerDeploymentHandlers(ctx workflow.Context) error {
	if err := workflow.SetUpdateHandlerWithOptions(ctx, replica.UpdateReconfigure,
		func(ctx workflow.Context, req ReconfigureRequest) (ReconfigureResult, error) {
			c := &command{kind: cmdReconfigure, reconf: &req}
			_, err := s.submit(ctx, c)
			return c.result, err
		},
		workflow.UpdateHandlerOptions{Validator: func(req ReconfigureRequest) error {
			if err := req.check(); err != nil {
				return err
			}
			return s.validate(&command{kind: cmdReconfigure})
		}}); err != nil {
		return err
	}
	if s.rel >= V030 {
		if err := workflow.SetUpdateHandlerWithOptions(ctx, replica.UpdateMove,
			func(ctx workflow.Context, req MoveRequest) (ReconfigureResult, error) {
				c := &command{kind: cmdMove, move: &req}
				_, err := s.submit(ctx, c)
				return c.result, err
			},
			workflow.UpdateHandlerOptions{Validator: func(MoveRequest) error {
				return s.validate(&command{kind: cmdMove})
			}}); err != nil {
			return err
		}
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, replica.UpdateShutdown,
		func(ctx workflow.Context, req ShutdownRequest) error {
			_, err := s.submit(ctx, &command{kind: cmdShutdown, by: req.By})
			return err
		},
		workflow.UpdateHandlerOptions{Validator: func(ShutdownRequest) error {
			return s.validate(&command{kind: cmdShutdown})
		}})
}

// check refuses a malformed reconfigure before it reaches history: a
// replica without a node would wait on a queue no worker polls, and a huge
// min_ready would hold the rollout for as long.
func (req ReconfigureRequest) check() error {
	switch {
	case req.Config.Spec.Image == "":
		return fmt.Errorf("reconfigure: config.spec.image is empty; send the replica's whole config")
	case req.Config.Node == "":
		return fmt.Errorf("reconfigure: config.node is empty; send the replica's whole config")
	case req.MinReady < 0 || req.MinReady > spec.MaxMinReady:
		return fmt.Errorf("reconfigure: min_ready %s is out of range; use up to %s", req.MinReady, human(spec.MaxMinReady))
	}
	return nil
}

// handleDeployment carries out a reconfigure or shutdown request.
func (s *supervisor) handleDeployment(ctx workflow.Context, c *command) error {
	switch c.kind {
	case cmdShutdown:
		if s.st.State == StateShutdown || s.st.State == StateIsolated {
			s.finish(c, nil) // already down; its own event says why
			return nil
		}
		stopped, err := s.stop(ctx, false, false, "")
		if err != nil {
			return s.answer(c, err)
		}
		// The exit is the stop's: what containerd reports for the task.
		code := stopped.ExitCode
		s.st.LastExitCode, s.st.LastExitAt = &code, stopped.ExitedAt
		s.st.NextRestartAt = time.Time{}
		if s.rel >= V030 {
			s.st.ShutdownBy = c.by
		}
		s.setState(ctx, StateShutdown)
		s.emit(ctx, EventServiceShutdown, &code)
		s.finish(c, nil)
		return nil

	case cmdReconfigure:
		req := c.reconf
		if !req.Replace {
			// The policy only: the container keeps running, the crash window
			// and any backoff in progress are kept.
			cfg := req.Config.withDefaults()
			s.in.Policy, s.in.IsolateWebhook = cfg.Policy, cfg.IsolateWebhook
			s.in.Placement, s.in.LostAfter = cfg.Placement, cfg.LostAfter
			c.result = ReconfigureResult{Ready: true}
			s.finish(c, nil)
			return nil
		}
		if v := s.st.Replaced; v != nil && v.Generation == req.Generation && v.Digest == ConfigDigest(req.Config) && s.replaced(req) {
			// The same request again (its activity retried after the run
			// that answered it continued as new): the same verdict.
			c.result = ReconfigureResult{Ready: v.Ready, Reason: v.Reason}
			s.finish(c, nil)
			return nil
		}
		if s.replaced(req) {
			// Already done (a retried request after the update's run ended).
			c.result = ReconfigureResult{Ready: s.st.State == StateRunning}
			if !c.result.Ready {
				c.result.Reason = fmt.Sprintf("%s is %s", s.in.ID.Ref(), s.st.State)
			}
			s.finish(c, nil)
			return nil
		}
		var err error
		c.result, err = s.replace(ctx, req)
		if err == nil && s.rel >= V030 {
			s.st.Replaced = &ReplaceVerdict{Generation: req.Generation, Digest: ConfigDigest(req.Config), Ready: c.result.Ready, Reason: c.result.Reason}
		}
		return s.answer(c, err)
	}
	return nil
}

// replaced reports whether the container already is what req asks for.
// Since v0.3.0 that is this exact config (ConfigDigest), whatever the
// generations say (a rollback raises the generation back to a config the
// replica may still run; a recreated deployment may count from lower), and
// the replica takes the higher generation; before, any generation not above
// the replica's was taken as done.
func (s *supervisor) replaced(req *ReconfigureRequest) bool {
	if s.rel < V030 {
		return req.Generation <= s.st.Generation
	}
	if ConfigDigest(s.in.ReplicaConfig) != ConfigDigest(req.Config) {
		return false
	}
	s.st.Generation = max(s.st.Generation, req.Generation)
	return true
}

// replace makes a new container from a new generation: stop the old one
// with its grace period, remove it, create and start the new one, and see
// that it runs min_ready without exiting. Whatever state the replica was in
// (a backoff, Isolated, Shutdown), it is Running afterwards: applying a new
// spec is an operator's decision, like a release.
//
// Since v0.3.0 unsupervise is heard throughout: the error is then
// errUnsupervised, and the replacement is left where it was.
func (s *supervisor) replace(ctx workflow.Context, req *ReconfigureRequest) (ReconfigureResult, error) {
	ref := s.in.ID.Ref()
	s.details(ctx, fmt.Sprintf("replacing the container with generation %d", req.Generation))
	// The old container is stopped on its own node with its own grace.
	if _, err := s.stop(ctx, true, false, ""); err != nil {
		if errors.Is(err, errUnsupervised) {
			return ReconfigureResult{}, err
		}
		return ReconfigureResult{Reason: fmt.Sprintf("%s: stopping the old container failed: %s", ref, s.failure(err))}, nil
	}
	if s.st.State == StateIsolated || s.st.State == StateShutdown {
		s.st.History = policy.History{}
	}
	cfg := req.Config.withDefaults()
	if cfg.Movable() && cfg.Eligible(s.in.Node) {
		// The deployment planned the node it last knew; the replica may
		// have moved since (a lost node), and stays where it is.
		cfg.Node = s.in.Node
	}
	s.in.ReplicaConfig = cfg
	s.st.Generation = req.Generation
	s.st.NextRestartAt = time.Time{}
	s.setState(ctx, StateRestarting)

	before := workflow.Now(ctx)
	s.why = fmt.Sprintf("start generation %d", req.Generation)
	// The old container's exit (the stop above) is before the new task.
	res, err := s.start(ctx, time.Time{}, oneAttempt)
	if errors.Is(err, errUnsupervised) {
		return ReconfigureResult{}, err
	}
	if err != nil {
		// Restarting: the main loop keeps trying, with growing delays.
		return ReconfigureResult{Reason: fmt.Sprintf("%s: the new container did not start: %s", ref, s.failure(err))}, nil
	}
	s.setState(ctx, StateRunning)
	s.emit(ctx, EventContainerReplaced, nil)
	if res.ExitedSince {
		return ReconfigureResult{Reason: fmt.Sprintf("%s: the new container could not run: %s", ref, res.StartError)}, nil
	}
	after := res.StartedAt
	if after.IsZero() {
		after = before
	}
	return s.minReady(ctx, req, after)
}

// minReady watches the new container for min_ready: an exit within it ends
// the wait at once (the main loop's next watch then reports that exit to the
// policy, which handles it as usual). Should the watch itself fail, the
// timer still runs out and containerd is asked whether the new task has
// exited since it started.
func (s *supervisor) minReady(ctx workflow.Context, req *ReconfigureRequest, startedAt time.Time) (ReconfigureResult, error) {
	ref := s.in.ID.Ref()
	notReady := ReconfigureResult{Reason: fmt.Sprintf("%s: the new container exited within min_ready (%s)", ref, req.MinReady)}
	if req.MinReady > 0 {
		doing := fmt.Sprintf("watching the new container for min_ready %s", req.MinReady)
		s.details(ctx, fmt.Sprintf("generation %d: %s", req.Generation, doing))
		watchCtx, cancelWatch := workflow.WithCancel(ctx)
		defer cancelWatch()
		watch := workflow.ExecuteActivity(s.watchOptions(watchCtx), replica.WaitForExitName,
			activities.WaitForExitInput{ID: s.in.ID, PollInterval: s.in.Policy.PollInterval})
		timer := workflow.NewTimerWithOptions(ctx, req.MinReady,
			workflow.TimerOptions{Summary: fmt.Sprintf("min_ready %s (generation %d)", req.MinReady, req.Generation)})
		if s.rel >= V030 {
			if err := s.hear(ctx, first(ctx, timer, watch), doing, nil, cancelWatch); err != nil {
				return ReconfigureResult{}, err
			}
		}
		exited := false
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(timer, func(workflow.Future) {})
		sel.AddFuture(watch, func(f workflow.Future) { exited = f.Get(ctx, nil) == nil })
		sel.Select(ctx)
		if exited {
			return notReady, nil
		}
		if !timer.IsReady() {
			// The watch failed: wait out min_ready, then ask.
			if s.rel >= V030 {
				if err := s.hear(ctx, timer, doing, nil, func() {}); err != nil {
					return ReconfigureResult{}, err
				}
			}
			if err := timer.Get(ctx, nil); err != nil {
				return ReconfigureResult{Reason: err.Error()}, nil
			}
		} else {
			cancelWatch()
			return ReconfigureResult{Ready: true}, nil
		}
	}
	probe, err := s.ensureRunning(ctx, startedAt, "")
	if errors.Is(err, errUnsupervised) {
		return ReconfigureResult{}, err
	}
	if err != nil {
		return ReconfigureResult{Reason: fmt.Sprintf("%s: checking the new container failed: %s", ref, s.failure(err))}, nil
	}
	if probe.ExitedSince {
		s.started(ctx, probe) // its exit is acted on, whether or not the node watch reports it
		return notReady, nil
	}
	return ReconfigureResult{Ready: true}, nil
}

// first is ready (with nothing) once any of fs is.
func first(ctx workflow.Context, fs ...workflow.Future) workflow.Future {
	f, set := workflow.NewFuture(ctx)
	workflow.Go(ctx, func(ctx workflow.Context) {
		sel := workflow.NewSelector(ctx)
		for _, x := range fs {
			sel.AddFuture(x, func(workflow.Future) {})
		}
		sel.Select(ctx)
		set.Set(nil, nil)
	})
	return f
}

// shutDownService tells the deployment workflow that this replica's panic
// policy shut its service down; it stops the other replicas. Replicas
// supervised without a deployment workflow have no one to tell.
func (s *supervisor) shutDownService(ctx workflow.Context, code int) {
	if o := s.old(); o != nil {
		o.shutDownService(ctx, s, code)
		return
	}
	err := workflow.SignalExternalWorkflow(ctx, replica.DeploymentWorkflowID(s.in.ID.Deployment), "", replica.SignalServiceShutdown,
		ServiceShutdownSignal{Service: s.in.ID.Service, Replica: s.in.ID.Replica, ExitCode: code}).Get(ctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Warn("the deployment workflow was not told of the shutdown; only this replica stops", "error", err)
	}
}
