package workflows

import (
	"hash/fnv"
	"time"

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

// runLength is how long this run lasts unless something ends it sooner.
// Since v0.3.0 it ends at the replica's own phase (continueAsNewDelay), so a
// fleet applied within one hour does not continue as new within one hour
// every day; before, exactly ContinueAsNewEvery after it began.
func (s *supervisor) runLength(ctx workflow.Context) time.Duration {
	if s.rel < V030 {
		return s.in.ContinueAsNewEvery
	}
	return continueAsNewDelay(workflow.GetInfo(ctx).WorkflowExecution.ID, workflow.Now(ctx), s.in.ContinueAsNewEvery)
}

// continueAsNewDelay is how long a run that begins at now lasts: until the
// first time t (workflow time, Unix nanoseconds) after now+every/2 with
// t ≡ phase (mod every/2), phase hashed from the workflow ID. It lies in
// (every/2, every], 3/4 of every on average, whenever the run began. A run
// that begins at its phase (the run after a periodic continue-as-new) lasts
// every, so a replica keeps its phase: a fleet started within a minute
// continues as new spread evenly over half the period, the same half each
// period, never at once.
func continueAsNewDelay(workflowID string, now time.Time, every time.Duration) time.Duration {
	half := int64(every / 2)
	if half <= 0 {
		return every
	}
	phase := int64(idHash(workflowID) % uint64(half))
	// How far now+every/2 lies past the last time at the phase, in [0, half).
	past := ((now.UnixNano()+half-phase)%half + half) % half
	return time.Duration(2*half - past)
}

// idHash is a replica's own number, hashed from its workflow ID: the same in
// every replay and run, different between replicas.
func idHash(workflowID string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(workflowID))
	return h.Sum64()
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
