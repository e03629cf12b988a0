package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/replica"
)

func (s *supervisor) shouldContinueAsNew(ctx workflow.Context) bool {
	limit := s.in.ContinueAsNewAfter
	if limit <= 0 {
		limit = DefaultContinueAsNewAfter
	}
	return s.exitsThisRun+s.ignoredThisRun >= limit || workflow.GetInfo(ctx).GetContinueAsNewSuggested() ||
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
	return workflow.NewContinueAsNewError(ctx, replica.SupervisorWorkflowName, next)
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
	if err := workflow.UpsertTypedSearchAttributes(ctx, SearchAttrState.ValueSet(replica.SearchStateContinuedAsNew)); err != nil {
		workflow.GetLogger(ctx).Warn("search attributes not upserted", "error", err)
	}
}
