package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// A node's lease as the server knows it, and what the node workflow and a
// lost node's replicas do with it (workflows/lease.go, move.go).

// NodeLease reads node's lease: the last renewal of its watch (the latest
// heartbeat or start of a WatchNode attempt, retried ones included), on the
// server's clock. Zero when the node has no workflow or no watch has run.
func NodeLease(ctx context.Context, c client.Client, node string) (workflows.NodeLease, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, replica.NodeWorkflowID(node), "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return workflows.NodeLease{}, nil
	}
	if err != nil {
		return workflows.NodeLease{}, fmt.Errorf("read the lease of node %s: %w", node, err)
	}
	var last time.Time
	for _, a := range desc.GetPendingActivities() {
		if a.GetActivityType().GetName() != replica.WatchNodeName {
			continue
		}
		for _, t := range []time.Time{a.GetLastHeartbeatTime().AsTime(), a.GetLastStartedTime().AsTime()} {
			if t.After(last) && t.Unix() > 0 {
				last = t
			}
		}
	}
	return workflows.NodeLease{LastRenewal: last}, nil
}

// leasePoll is how often a lease wait reads a lapsed lease (a describe of
// the node's workflow): once per renewal, only while it is lapsed.
const leasePoll = workflows.NodeLiveHeartbeat

// AwaitNodeLease returns once node's lease was renewed after
// in.RenewedAfter. It heartbeats, so another worker takes the wait over
// when this one is lost.
func (a *Activities) AwaitNodeLease(ctx context.Context, in workflows.NodeLeaseInput) (workflows.NodeLease, error) {
	tick := time.NewTicker(leasePoll)
	defer tick.Stop()
	for {
		l, err := NodeLease(ctx, a.c, in.Node)
		switch {
		case err != nil:
			activity.GetLogger(ctx).Warn("Lease not read; trying again", "node", in.Node, "error", err)
		case l.LastRenewal.After(in.RenewedAfter):
			return l, nil
		}
		activity.RecordHeartbeat(ctx)
		select {
		case <-ctx.Done():
			return workflows.NodeLease{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// NotifyNodeReplicas signals the notice to every replica supervised on the
// node. A replica that ended meanwhile is skipped.
func (a *Activities) NotifyNodeReplicas(ctx context.Context, in workflows.NotifyNodeReplicasInput) (int, error) {
	ids, err := listWorkflows(ctx, a.c, workflows.NodeSupervisedQuery(in.Node))
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	info := activity.GetInfo(ctx)
	namespace := info.WorkflowNamespace
	if in.Notice.Lost {
		if last, ok := lapsedAfter(ctx, a.c, namespace, info.WorkflowExecution.ID, info.WorkflowExecution.RunID, in.Notice.LastRenewal); ok {
			in.Notice.LastRenewal = last
		}
	}
	for _, id := range ids {
		if in.Notice.Lost {
			// As the node workflow's: a replica cached on the lost node's
			// worker would hear the notice only after its sticky timeout.
			resetSticky(ctx, a.c, namespace, id)
		}
		err := a.c.SignalWorkflow(ctx, id, "", replica.SignalNodeLease, in.Notice)
		var notFound *serviceerror.NotFound
		switch {
		case err == nil:
			n++
		case !errors.As(err, &notFound):
			errs = append(errs, fmt.Errorf("signal %s: %w", id, err))
		}
	}
	return n, errors.Join(errs...)
}

// lapsedAfter is the last renewal of a lapsed lease, on the server's clock:
// the workflow (the node's run that saw the lapse, which knows it only as
// late as its task ran, upTo) has in its history when the server timed its
// watch out, NodeLeaseLapse after that renewal (its one heartbeat timeout
// not retried). A workflow task held a while on a lost worker's sticky
// queue thus does not delay the replicas' moves.
func lapsedAfter(ctx context.Context, c client.Client, namespace string, workflowID, runID string, upTo time.Time) (time.Time, bool) {
	req := &workflowservice.GetWorkflowExecutionHistoryReverseRequest{
		Namespace:       namespace,
		Execution:       &commonpb.WorkflowExecution{WorkflowId: workflowID, RunId: runID},
		MaximumPageSize: 200,
	}
	for range 5 {
		resp, err := c.WorkflowService().GetWorkflowExecutionHistoryReverse(ctx, req)
		if err != nil {
			activity.GetLogger(ctx).Warn("Lapse not read from the node's history; its replicas get the workflow's time", "error", err)
			return time.Time{}, false
		}
		for _, e := range resp.GetHistory().GetEvents() {
			t := e.GetActivityTaskTimedOutEventAttributes()
			if t.GetFailure().GetTimeoutFailureInfo().GetTimeoutType() != enumspb.TIMEOUT_TYPE_HEARTBEAT {
				continue
			}
			if last := e.GetEventTime().AsTime().Add(-workflows.NodeLeaseLapse); !last.After(upTo) {
				return last, true
			}
		}
		if req.NextPageToken = resp.GetNextPageToken(); len(req.NextPageToken) == 0 {
			break
		}
	}
	return time.Time{}, false
}

// PlanMove says where a replica of a lost node goes: nowhere if the lost
// node's lease came back, else the eligible node whose lease is live with
// the fewest replicas (the first listed on a tie).
func (a *Activities) PlanMove(ctx context.Context, in workflows.PlanMoveInput) (workflows.MovePlan, error) {
	if !in.Drain {
		from, err := NodeLease(ctx, a.c, in.From)
		if err != nil {
			return workflows.MovePlan{}, err
		}
		if from.LastRenewal.After(in.LastRenewal) {
			return workflows.MovePlan{Renewed: true}, nil
		}
	}
	best, fewest := "", 0
	var why []string
	for _, node := range in.Placement {
		if node == in.From {
			continue
		}
		l, err := NodeLease(ctx, a.c, node)
		if err != nil {
			return workflows.MovePlan{}, err
		}
		if l.LastRenewal.IsZero() || time.Since(l.LastRenewal) >= workflows.NodeLeaseLapse {
			why = append(why, node+": no live lease")
			continue
		}
		if view, err := NodeView(ctx, a.c, node); err != nil || view.Cordoned {
			why = append(why, node+": cordoned")
			continue
		}
		ids, err := listWorkflows(ctx, a.c, workflows.NodeSupervisedQuery(node))
		if err != nil {
			return workflows.MovePlan{}, err
		}
		if best == "" || len(ids) < fewest {
			best, fewest = node, len(ids)
		}
	}
	if best == "" {
		return workflows.MovePlan{Why: "no eligible node is ready (" + strings.Join(why, "; ") + ")"}, nil
	}
	return workflows.MovePlan{To: best}, nil
}

// drainRetry is the pause before a drain tries a replica again (one busy
// with a start or a rollout step).
const drainRetry = 5 * time.Second

// DrainNode moves the node's movable replicas off it, one at a time: each
// replica's move update stops its container, starts it on another node and
// answers once it ran its service's min_ready, so a service never has more
// than one replica down for the drain (within any max_unavailable). It
// returns when only pinned replicas are left (or a move failed for good).
func (a *Activities) DrainNode(ctx context.Context, in workflows.DrainInput) (workflows.DrainResult, error) {
	res := workflows.DrainResult{Moved: []string{}}
	log := activity.GetLogger(ctx)
	failed := map[string]int{}
	for {
		ids, err := listWorkflows(ctx, a.c, workflows.NodeSupervisedQuery(in.Node))
		if err != nil {
			return res, err
		}
		left := 0
		for _, wid := range ids {
			id, err := replica.ParseRef(wid)
			if err != nil || slices.Contains(res.Moved, id.Ref()) || slices.Contains(res.Pinned, id.Ref()) || failed[id.Ref()] >= 3 {
				continue
			}
			left++
			var out workflows.ReconfigureResult
			req := workflows.MoveRequest{From: in.Node, Reason: workflows.ReasonDrained, MinReady: a.minReady(ctx, id)}
			err = a.update(ctx, id, "", replica.UpdateMove, req, &out)
			var appErr *temporal.ApplicationError
			switch {
			case errors.Is(err, errGone):
			case errors.As(err, &appErr) && appErr.Type() == replica.ErrTypePinned:
				res.Pinned = append(res.Pinned, id.Ref())
			case err != nil || !out.Ready:
				failed[id.Ref()]++
				why := out.Reason
				if err != nil {
					why = err.Error()
				}
				log.Warn("Move off the drained node did not work; tried again", "replica", id.Ref(), "node", in.Node, "why", why)
				if failed[id.Ref()] >= 3 {
					res.Failed = append(res.Failed, id.Ref()+": "+why)
				}
				select {
				case <-ctx.Done():
					return res, ctx.Err()
				case <-time.After(drainRetry):
				}
			default:
				res.Moved = append(res.Moved, id.Ref())
				log.Info("Moved off the drained node", "replica", id.Ref(), "node", in.Node)
			}
			activity.RecordHeartbeat(ctx, len(res.Moved))
		}
		if left == 0 {
			return res, nil
		}
	}
}

// minReady is the min_ready of id's service, from its deployment's desired
// state (the default when that cannot be read).
func (a *Activities) minReady(ctx context.Context, id replica.ID) time.Duration {
	v, err := a.c.QueryWorkflow(ctx, replica.DeploymentWorkflowID(id.Deployment), "", replica.QueryDesired)
	var desired *workflows.DeploymentSpec
	if err == nil && v.Get(&desired) == nil && desired != nil {
		for _, s := range desired.Services {
			if s.Name == id.Service {
				return s.Update.WithDefaults().MinReady
			}
		}
	}
	return workflows.DefaultMinReady
}

// listWorkflows lists the IDs of the workflows query finds.
func listWorkflows(ctx context.Context, c client.Client, query string) ([]string, error) {
	var out []string
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list workflows (%s): %w", query, err)
		}
		for _, e := range resp.GetExecutions() {
			out = append(out, e.GetExecution().GetWorkflowId())
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}
