package control

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"

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

// leasePoll is how often a lease wait reads the lease.
const leasePoll = time.Second

// AwaitNodeLease returns once node's lease lapsed (is LapsedAfter old) or,
// with RenewedAfter, once it was renewed after that. It heartbeats, so
// another worker takes the wait over when this one is lost.
func (a *Activities) AwaitNodeLease(ctx context.Context, in workflows.NodeLeaseInput) (workflows.NodeLease, error) {
	tick := time.NewTicker(leasePoll)
	defer tick.Stop()
	for {
		l, err := NodeLease(ctx, a.c, in.Node)
		if err == nil {
			switch {
			case !in.RenewedAfter.IsZero():
				if l.LastRenewal.After(in.RenewedAfter) {
					return l, nil
				}
			case !l.LastRenewal.IsZero() && time.Since(l.LastRenewal) >= in.LapsedAfter:
				return l, nil
			}
		} else {
			activity.GetLogger(ctx).Warn("Lease not read; trying again", "node", in.Node, "error", err)
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
	for _, id := range ids {
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

// PlanMove says where a replica of a lost node goes: nowhere if the lost
// node's lease came back, else the eligible node whose lease is live with
// the fewest replicas (the first listed on a tie).
func (a *Activities) PlanMove(ctx context.Context, in workflows.PlanMoveInput) (workflows.MovePlan, error) {
	from, err := NodeLease(ctx, a.c, in.From)
	if err != nil {
		return workflows.MovePlan{}, err
	}
	if from.LastRenewal.After(in.LastRenewal) {
		return workflows.MovePlan{Renewed: true}, nil
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
