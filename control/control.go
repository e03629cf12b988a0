// Package control holds what the deployment workflow and the CLI do to
// replica workflows through a Temporal client: read what runs of a
// deployment, start a replica's supervision, and send it updates. The
// worker registers the activities (they run on the workflow task queue);
// the CLI's dry run uses Observe directly. The worker also claims its node
// and reports its containers' exits through it (node.go).
package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/errgroup"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/workflows"
)

// Activities are the deployment workflow's control activities.
type Activities struct {
	c client.Client
}

// New returns the control activities over c.
func New(c client.Client) *Activities { return &Activities{c: c} }

// Register registers every control activity under its constant name.
func (a *Activities) Register(w interface {
	RegisterActivityWithOptions(any, activity.RegisterOptions)
}) {
	for name, fn := range map[string]any{
		replica.ObserveReplicasName:    a.ObserveReplicas,
		replica.ObserveReplicaPageName: a.ObserveReplicaPage,
		replica.StartReplicaName:       a.StartReplica,
		replica.StartReplicasName:      a.StartReplicas,
		replica.ReconfigureReplicaName: a.ReconfigureReplica,
		replica.UnsuperviseReplicaName: a.UnsuperviseReplica,
		replica.ShutdownReplicaName:    a.ShutdownReplica,
		replica.AwaitNodeLeaseName:     a.AwaitNodeLease,
		replica.NotifyNodeReplicasName: a.NotifyNodeReplicas,
		replica.PlanMoveName:           a.PlanMove,
		replica.DeleteReplicaName:      a.DeleteReplica,
		replica.DrainNodeName:          a.DrainNode,
	} {
		w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// ObserveReplicas reads what runs of a deployment.
func (a *Activities) ObserveReplicas(ctx context.Context, in workflows.ObserveInput) ([]workflows.ReplicaRecord, error) {
	return Observe(ctx, a.c, in)
}

// Observe reads the replicas of a deployment: those named in Known directly
// (strongly consistent), and any other supervised under the deployment's
// name, found through visibility. A replica whose supervision ended because
// its container completed is included (Closed); one unsupervised is not.
func Observe(ctx context.Context, c client.Client, in workflows.ObserveInput) ([]workflows.ReplicaRecord, error) {
	refs := map[string]bool{}
	var order []string
	add := func(ref string) {
		if !refs[ref] {
			refs[ref] = true
			order = append(order, ref)
		}
	}
	for _, ref := range in.Known {
		add(ref)
	}
	listed, err := listRefs(ctx, c, in.Deployment)
	if err != nil {
		return nil, err
	}
	for _, ref := range listed {
		add(ref)
	}
	return observeRefs(ctx, c, order)
}

// ObserveReplicaPage reads one page of what runs of a deployment (since
// v0.3.0): the refs of every replica supervised under its name (List), or
// the replicas Refs names, their configs by digest.
func (a *Activities) ObserveReplicaPage(ctx context.Context, in workflows.ObservePageInput) (workflows.ObservePage, error) {
	if in.List {
		listed, err := listRefs(ctx, a.c, in.Deployment)
		return workflows.ObservePage{Listed: listed}, err
	}
	recs, err := observeRefs(ctx, a.c, in.Refs)
	if err != nil {
		return workflows.ObservePage{}, err
	}
	return workflows.ObservePage{Replicas: workflows.Compact(recs)}, nil
}

// listRefs lists the refs of the replicas supervised under deployment's
// name, through visibility.
func listRefs(ctx context.Context, c client.Client, deployment string) ([]string, error) {
	var out []string
	query := workflows.ReplicasQuery(deployment, "", "")
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list the replicas of %s: %w", deployment, err)
		}
		for _, e := range resp.GetExecutions() {
			if id, err := replica.ParseRef(e.GetExecution().GetWorkflowId()); err == nil && id.Deployment == deployment {
				out = append(out, id.Ref())
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}

// observeRefs reads the replicas refs names; those not supervised (nor
// completed) are left out.
func observeRefs(ctx context.Context, c client.Client, refs []string) ([]workflows.ReplicaRecord, error) {
	var out []workflows.ReplicaRecord
	for _, ref := range refs {
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, ref)
		}
		rec, ok, err := observeOne(ctx, c, ref)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, rec)
		}
	}
	return out, nil
}

func observeOne(ctx context.Context, c client.Client, ref string) (workflows.ReplicaRecord, bool, error) {
	id, err := replica.ParseRef(ref)
	if err != nil {
		return workflows.ReplicaRecord{}, false, err
	}
	wid := id.WorkflowID()
	resp, err := c.DescribeWorkflowExecution(ctx, wid, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return workflows.ReplicaRecord{}, false, nil
	}
	if err != nil {
		return workflows.ReplicaRecord{}, false, fmt.Errorf("describe %s: %w", ref, err)
	}
	rec := workflows.ReplicaRecord{ID: id}
	switch resp.GetWorkflowExecutionInfo().GetStatus() {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		// Completed because its container exited 0, or unsupervised: only
		// the former still counts as the replica.
		rec.Closed = true
	default:
		return workflows.ReplicaRecord{}, false, nil
	}
	var view workflows.StateView
	if err := query(ctx, c, wid, replica.QueryState, &view); err != nil {
		return workflows.ReplicaRecord{}, false, fmt.Errorf("state of %s: %w", ref, err)
	}
	if rec.Closed && view.State != workflows.StateCompleted {
		return workflows.ReplicaRecord{}, false, nil
	}
	var in workflows.SupervisionInput
	if err := query(ctx, c, wid, replica.QueryConfig, &in); err != nil {
		return workflows.ReplicaRecord{}, false, fmt.Errorf("config of %s: %w", ref, err)
	}
	rec.Config, rec.Generation, rec.State = in.ReplicaConfig, view.Generation, view.State
	rec.Digest = workflows.ConfigDigest(rec.Config)
	if view.Health != nil {
		rec.Health = runtime.HealthStatus(*view.Health)
	}
	return rec, true, nil
}

func query(ctx context.Context, c client.Client, wid, name string, out any) error {
	v, err := c.QueryWorkflow(ctx, wid, "", name)
	if err != nil {
		return err
	}
	return v.Get(out)
}

// StartReplica starts supervising one replica, leaving a running supervisor
// alone (so a retried activity never starts a second one).
func (a *Activities) StartReplica(ctx context.Context, in workflows.SupervisionInput) error {
	_, err := StartReplica(ctx, a.c, activity.GetInfo(ctx).TaskQueue, in)
	return err
}

// startParallelism bounds the starts one StartReplicas activity has in
// flight: enough to hide a start's round trip, few enough not to flood the
// frontend.
const startParallelism = 16

// StartReplicas starts a batch of replicas' supervisors, several at once,
// heartbeating as each starts. Each start leaves a running supervisor alone,
// so a retried batch starts only the ones the last attempt did not.
func (a *Activities) StartReplicas(ctx context.Context, in workflows.StartReplicasInput) error {
	taskQueue := activity.GetInfo(ctx).TaskQueue
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(startParallelism)
	for _, r := range in.Replicas {
		g.Go(func() error {
			if _, err := StartReplica(gctx, a.c, taskQueue, r); err != nil {
				return fmt.Errorf("start %s: %w", r.ID.Ref(), err)
			}
			activity.RecordHeartbeat(ctx, r.ID.Ref())
			return nil
		})
	}
	return g.Wait()
}

// StartReplica starts the replica's supervisor workflow unless one runs.
func StartReplica(ctx context.Context, c client.Client, taskQueue string, in workflows.SupervisionInput) (client.WorkflowRun, error) {
	return c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        in.ID.WorkflowID(),
		TaskQueue: taskQueue,
		// A running supervisor is never touched; a closed one (completed or
		// unsupervised) may be started afresh.
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			// Until the workflow has started the container once.
			workflows.SearchAttrState.ValueSet(string(workflows.StatePending)),
			workflows.SearchAttrService.ValueSet(in.ID.Service),
			workflows.SearchAttrDeployment.ValueSet(in.ID.Deployment),
		),
	}, replica.SupervisorWorkflowName, in)
}

// ReconfigureReplica sends a reconfigure update and waits for its answer
// (a replacement answers after min_ready), heartbeating meanwhile. The
// update ID makes a retried attempt join the same update.
func (a *Activities) ReconfigureReplica(ctx context.Context, in workflows.ReconfigureReplicaInput) (workflows.ReconfigureReplicaResult, error) {
	var res workflows.ReconfigureReplicaResult
	err := a.update(ctx, in.ID, in.UpdateID, replica.UpdateReconfigure, in.Request, &res.ReconfigureResult)
	switch {
	case errors.Is(err, errGone):
		return workflows.ReconfigureReplicaResult{Missing: true}, nil
	case err != nil:
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() != replica.ErrTypeBusy {
			// The replica refused: the rollout stops here, saying why.
			return workflows.ReconfigureReplicaResult{ReconfigureResult: workflows.ReconfigureResult{Reason: in.ID.Ref() + ": " + appErr.Message()}}, nil
		}
		return res, err
	}
	return res, nil
}

// UnsuperviseReplica stops a replica with its grace period and ends its
// supervision. A replica that is not supervised is already done.
func (a *Activities) UnsuperviseReplica(ctx context.Context, in workflows.ReplicaRequest) error {
	err := a.update(ctx, in.ID, "", replica.UpdateUnsupervise, workflows.UnsuperviseRequest{Stop: true}, nil)
	if errors.Is(err, errGone) {
		return nil
	}
	return err
}

// DeleteReplica ends a replica's supervision for vigil delete: its
// container stopped and removed (named volumes too, if asked) unless kept.
// A stop no worker took is done by the next worker on the node (Left).
func (a *Activities) DeleteReplica(ctx context.Context, in workflows.DeleteReplicaInput) (workflows.DeletedReplica, error) {
	var res workflows.UpdateResult
	req := workflows.UnsuperviseRequest{Stop: !in.KeepContainer, Volumes: in.Volumes && !in.KeepContainer}
	err := a.update(ctx, in.ID, "", replica.UpdateUnsupervise, req, &res)
	switch {
	case errors.Is(err, errGone):
		return workflows.DeletedReplica{Note: "not supervised any more"}, nil
	case err != nil:
		return workflows.DeletedReplica{}, err
	}
	return workflows.DeletedReplica{Note: "unsupervised; " + res.Note, Left: res.NotStopped}, nil
}

// ShutdownReplica stops a replica because its service was shut down.
func (a *Activities) ShutdownReplica(ctx context.Context, in workflows.ReplicaRequest) error {
	err := a.update(ctx, in.ID, "", replica.UpdateShutdown, workflows.ShutdownRequest{Cause: in.Cause, By: in.By}, nil)
	var appErr *temporal.ApplicationError
	switch {
	case errors.Is(err, errGone):
		return nil
	case errors.As(err, &appErr) && appErr.Type() != replica.ErrTypeBusy:
		activity.GetLogger(ctx).Warn("replica refused the shutdown", "replica", in.ID.Ref(), "error", err)
		return nil
	}
	return err
}

// errGone: the replica's supervisor is not running.
var errGone = errors.New("replica not supervised")

func (a *Activities) update(ctx context.Context, id replica.ID, updateID, name string, arg, out any) error {
	stop := heartbeat(ctx)
	defer stop()
	h, err := a.c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id.WorkflowID(),
		UpdateID:     updateID,
		UpdateName:   name,
		Args:         []any{arg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, out)
	}
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		// The run the update met may have just continued as new: only a
		// replica with no running supervisor is gone; otherwise try again.
		if d, derr := a.c.DescribeWorkflowExecution(ctx, id.WorkflowID(), ""); derr == nil &&
			d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return fmt.Errorf("%s: %s met a run that has ended and a new one runs; trying again: %w", id.Ref(), name, err)
		}
		return errGone
	}
	return err
}

// heartbeat records heartbeats until stopped, so a long wait on another
// workflow does not look like a dead worker.
func heartbeat(ctx context.Context) func() {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(3 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx, "waiting")
			}
		}
	}()
	return func() { close(done) }
}
