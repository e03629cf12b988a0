package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/replica"
)

// The deployment workflow, "vigil/<deployment>", holds a deployment's
// desired state and its generation and drives the replica workflows towards
// it, one step at a time: removals (highest-numbered first), new replicas,
// policy changes in place, then replacements, max_unavailable at a time,
// each waiting until the new container has run min_ready. Every step is an
// activity with a summary, so the rollout reads in the Web UI. Between steps
// it takes new applies, so a new apply supersedes the rollout in progress.
//
// The deployer's methods sit by purpose: applies (deployment_apply.go),
// planning (plan.go), steps (deployment_steps.go) and records
// (deployment_records.go).

// deploymentContinueAfter bounds the history of one run.
const deploymentContinueAfter = 2000

// DeploymentContinueEvery is the longest one run lasts, in workflow time,
// before it continues as new (since v0.3.0), even with nothing to do: no
// run outlives a release by more than a day (versions.go, Retiring).
const DeploymentContinueEvery = 24 * time.Hour

// continueTimer starts the run's continue-as-new timer (since v0.3.0; a
// future that never becomes ready before).
func (d *deployer) continueTimer(ctx workflow.Context) workflow.Future {
	if d.rel < V030 {
		f, _ := workflow.NewFuture(ctx)
		return f
	}
	return workflow.NewTimerWithOptions(ctx, DeploymentContinueEvery, workflow.TimerOptions{Summary: "periodic continue-as-new"})
}

// deployer is one run of the deployment workflow.
type deployer struct {
	// rel is the release this run was started under (readRelease).
	rel      Release
	in       DeploymentInput
	name     string
	st       DeploymentCarry
	applies  []*pendingApply
	shutdown workflow.ReceiveChannel
	// stepping: a rollout step is in flight.
	stepping bool
	// waiting is why the rollout waits for a replica to be back ("" when
	// it does not).
	waiting string

	// inflight are the steps in flight that bring replicas to a new config
	// (by ref): an apply meanwhile is planned against their configs, and
	// since v0.3.0 the step ends by observing these replicas again.
	inflight map[string]Step

	// deletion is the delete asked for (nil: none); deleted what it did,
	// once done (deployment_delete.go).
	deletion *DeleteRequest
	deleted  *DeleteResult
}

// Deployment is the workflow of one deployment.
func Deployment(ctx workflow.Context, in DeploymentInput) error {
	d := newDeployer(ctx, in)
	if err := d.registerQueries(ctx); err != nil {
		return err
	}
	if err := d.registerApply(ctx); err != nil {
		return err
	}
	if err := d.registerDelete(ctx); err != nil {
		return err
	}
	return d.run(ctx)
}

// newDeployer reads the run's release, first thing, and its carried state.
func newDeployer(ctx workflow.Context, in DeploymentInput) *deployer {
	d := &deployer{rel: readRelease(ctx, nil), in: in, name: in.Name, shutdown: workflow.GetSignalChannel(ctx, replica.SignalServiceShutdown)}
	if in.Carry != nil {
		d.st = *in.Carry
		d.in.Carry = nil
		if c := d.st.Compact; c != nil {
			d.st.Replicas, d.st.Compact = map[string]ReplicaRecord{}, nil
			for _, r := range c.Records(in.Name) {
				d.st.Replicas[r.ID.Ref()] = r
			}
		}
	}
	// A deployment deleted before counts on from where it was.
	d.st.Generation = max(d.st.Generation, in.AfterGeneration)
	if d.in.ContinueAsNewAfter <= 0 {
		d.in.ContinueAsNewAfter = deploymentContinueAfter
	}
	if d.st.Replicas == nil {
		d.st.Replicas = map[string]ReplicaRecord{}
	}
	return d
}

func (d *deployer) run(ctx workflow.Context) error {
	steps := 0
	due := d.continueTimer(ctx)
	for {
		d.details(ctx)
		if err := workflow.Await(ctx, func() bool {
			return len(d.applies) > 0 || d.shutdown.Len() > 0 || d.deletion != nil || d.hasWork() || due.IsReady()
		}); err != nil {
			return err
		}
		var err error
		switch {
		case due.IsReady() && len(d.applies) == 0 && d.shutdown.Len() == 0 && d.deletion == nil:
			// Time for a new run (below), once the handlers are done; the
			// step, if any, is the next run's.
			err = workflow.Await(ctx, func() bool {
				return workflow.AllHandlersFinished(ctx) || len(d.applies) > 0 || d.shutdown.Len() > 0 || d.deletion != nil
			})
		case len(d.applies) > 0:
			err = d.takeApplies(ctx)
		case d.shutdown.Len() > 0:
			var sig ServiceShutdownSignal
			if receiveSignal(d.shutdown, &sig) {
				err = d.shutDownService(ctx, sig)
			}
		case d.deletion != nil:
			// The run ends here: nothing is carried.
			return d.deleteAll(ctx)
		default:
			err = d.step(ctx)
		}
		if err != nil {
			return err
		}
		steps++
		if (steps >= d.in.ContinueAsNewAfter || workflow.GetInfo(ctx).GetContinueAsNewSuggested() || due.IsReady()) &&
			len(d.applies) == 0 && d.shutdown.Len() == 0 && workflow.AllHandlersFinished(ctx) {
			// Everything the next run needs is in the carry: the desired
			// spec, the generation, the replicas and a pause.
			next, carry := d.in, d.st
			carry.Runs++
			if d.rel >= V030 {
				c := Compact(d.records())
				carry.Replicas, carry.Compact = nil, &c
			}
			next.Carry = &carry
			return workflow.NewContinueAsNewError(ctx, replica.DeploymentWorkflowName, next)
		}
	}
}
