package control

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// Client-side helpers of the node watch, used by vigil-worker. They are not
// workflow code.

// Claimant is who claims a node: the worker (its Temporal identity), the
// node's persistent identity, this process's instance and its host, and
// the instance this one replaces (see workflows.Claim).
type Claimant struct {
	Worker, NodeID, Instance, Host, Replaces string
	// Logs is the worker's logs endpoint, if it serves one.
	Logs *workflows.LogsEndpoint
}

// ClaimRefused is a claim the node's workflow refused: another worker
// holds the node. Its text says which host and what to do.
type ClaimRefused struct{ Reason string }

func (e *ClaimRefused) Error() string { return e.Reason }

// ClaimNode makes the node's watch run on the calling worker at once. It
// starts vigil-node/<node> if it is not running and claims the node: by an
// update that the workflow may refuse (*ClaimRefused) since v0.3.0, by a
// signal to a run of an earlier release. The node workflow's cached state
// on a dead worker is dropped first, so the claim does not wait for that
// worker's sticky queue to time out.
func ClaimNode(ctx context.Context, c client.Client, namespace, taskQueue, node string, me Claimant) (workflows.Claim, error) {
	claim := workflows.Claim{ID: uuid.NewString(), Worker: me.Worker, At: time.Now().UTC(),
		NodeID: me.NodeID, Instance: me.Instance, Host: me.Host, Replaces: me.Replaces, Logs: me.Logs}
	id := replica.NodeWorkflowID(node)
	resetSticky(ctx, c, namespace, id)
	fail := func(err error) (workflows.Claim, error) {
		return claim, fmt.Errorf("claim node %s (workflow %s): %w", node, id, err)
	}
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, replica.NodeWorkflowName, workflows.NodeInput{Node: node}); err != nil {
		return fail(err)
	}
	view, err := NodeView(ctx, c, node)
	if err != nil {
		return fail(err)
	}
	if view.Release < workflows.V030 {
		if err := c.SignalWorkflow(ctx, id, "", replica.SignalClaim, claim); err != nil {
			return fail(err)
		}
		return claim, nil
	}
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return fail(err)
	}
	if w, ok := CurrentWatch(desc); ok {
		claim.HolderWorker, claim.HolderSeen = w.Worker, w.Seen
	}
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		UpdateID:     claim.ID,
		WorkflowID:   id,
		UpdateName:   replica.UpdateClaim,
		Args:         []any{claim},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == replica.ErrTypeNodeClaimed {
		return claim, &ClaimRefused{Reason: appErr.Message()}
	}
	if err != nil {
		return fail(err)
	}
	return claim, nil
}

// NodeView is the node workflow's view (its "node" query).
func NodeView(ctx context.Context, c client.Client, node string) (workflows.NodeView, error) {
	var view workflows.NodeView
	v, err := c.QueryWorkflow(ctx, replica.NodeWorkflowID(node), "", replica.QueryNode)
	if err == nil {
		err = v.Get(&view)
	}
	return view, err
}

// WatchSeen is a node watch's worker (its Temporal identity) and when the
// watch last showed it alive: its start or last heartbeat.
type WatchSeen struct {
	Worker string
	Seen   time.Time
}

// CurrentWatch is the node's live watch in desc (the node workflow's
// description): the running WatchNode seen last. An attempt whose
// cancellation was requested (an older claim's watch) is not the node's
// watch; ok is false when no watch runs.
func CurrentWatch(desc *workflowservice.DescribeWorkflowExecutionResponse) (w WatchSeen, ok bool) {
	for _, a := range desc.GetPendingActivities() {
		if a.GetActivityType().GetName() != replica.WatchNodeName || a.GetState() != enumspb.PENDING_ACTIVITY_STATE_STARTED {
			continue
		}
		seen := a.GetLastHeartbeatTime().AsTime()
		if started := a.GetLastStartedTime().AsTime(); started.After(seen) {
			seen = started
		}
		if !ok || seen.After(w.Seen) {
			w, ok = WatchSeen{Worker: a.GetLastWorkerIdentity(), Seen: seen}, true
		}
	}
	return w, ok
}

// TakeoverNode lets the next claim of node in, whoever makes it (`vigil
// node takeover`). It returns the node's view before: who held it.
func TakeoverNode(ctx context.Context, c client.Client, node string) (workflows.NodeView, error) {
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   replica.NodeWorkflowID(node),
		UpdateName:   replica.UpdateTakeover,
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var view workflows.NodeView
	if err == nil {
		err = h.Get(ctx, &view)
	}
	return view, err
}

// resetSticky drops a workflow's cached state on whichever worker last ran
// it (that worker may be dead): its next workflow task goes to the shared
// queue at once. Best effort; a missing workflow is fine.
func resetSticky(ctx context.Context, c client.Client, namespace, workflowID string) {
	_, _ = c.WorkflowService().ResetStickyTaskQueue(ctx, &workflowservice.ResetStickyTaskQueueRequest{
		Namespace: namespace,
		Execution: &commonpb.WorkflowExecution{WorkflowId: workflowID},
	})
}

// ExitReporter reports the node watch's exits to replica workflows by
// signal, by workflow ID only, so a report reaches the current run after a
// continue-as-new. A replica whose supervision ended is not an error.
func ExitReporter(c client.Client, namespace string) activities.Reporter {
	return &exitReporter{c: c, namespace: namespace}
}

type exitReporter struct {
	c         client.Client
	namespace string
}

func (r *exitReporter) ReportExit(ctx context.Context, rep activities.ExitReport, takeover bool) error {
	id := rep.ID.WorkflowID()
	if takeover {
		resetSticky(ctx, r.c, r.namespace, id)
	}
	err := r.c.SignalWorkflow(ctx, id, "", replica.SignalExit, rep)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return nil
	}
	return err
}

// Roster answers the node watch's question which replicas should run on a
// node from visibility: the replicas publish their node and state
// (workflows.SearchAttrNode, SearchAttrState). dc is the client's data
// converter, which reads the memos (encrypted with a codec key).
func Roster(c client.Client, dc converter.DataConverter) activities.Roster {
	return roster{c: c, dc: dc}
}

type roster struct {
	c  client.Client
	dc converter.DataConverter
}

func (r roster) Running(ctx context.Context, node string) ([]replica.ID, error) {
	if node == "" || strings.ContainsAny(node, `'\`) {
		return nil, fmt.Errorf("node name %q cannot be looked up", node)
	}
	query := workflows.NodeReplicasQuery(node, workflows.StateRunning)
	var out []replica.ID
	var token []byte
	for {
		resp, err := r.c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list the replicas on node %s: %w", node, err)
		}
		for _, e := range resp.GetExecutions() {
			if id, err := replica.ParseRef(e.GetExecution().GetWorkflowId()); err == nil {
				out = append(out, id)
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}

func (r roster) Owns(ctx context.Context, id replica.ID, node string) (bool, error) {
	desc, err := r.c.DescribeWorkflowExecution(ctx, id.WorkflowID(), "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	info := desc.GetWorkflowExecutionInfo()
	attrs := info.GetSearchAttributes().GetIndexedFields()
	// Runs before v0.3.0 publish no node: they own their container wherever it is.
	onNode := Keyword(attrs[replica.SearchAttrNode])
	if onNode != "" && onNode != node {
		return false, nil // the replica moved to another node
	}
	switch info.GetStatus() {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return true, nil
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		// Completed with its container, which is kept; not unsupervised.
		return Keyword(attrs[replica.SearchAttrState]) == string(workflows.StateCompleted), nil
	}
	return false, nil
}

func (r roster) MovedTo(ctx context.Context, id replica.ID, node string) (string, error) {
	desc, err := r.c.DescribeWorkflowExecution(ctx, id.WorkflowID(), "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	info := desc.GetWorkflowExecutionInfo()
	if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return "", nil
	}
	// Runs before v0.3.0 publish no node, and never move.
	if on := Keyword(info.GetSearchAttributes().GetIndexedFields()[replica.SearchAttrNode]); on != node {
		return on, nil
	}
	return "", nil
}

func (r roster) PendingStops(ctx context.Context, node string) ([]activities.StopInput, error) {
	if node == "" || strings.ContainsAny(node, `'\`) {
		return nil, fmt.Errorf("node name %q cannot be looked up", node)
	}
	query := workflows.NodeUnsupervisedQuery(node)
	seen := map[string]bool{}
	var out []activities.StopInput
	var errs []error // one replica's error does not hold up the others' stops
	var token []byte
	for {
		resp, err := r.c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			return out, errors.Join(append(errs, fmt.Errorf("list the unsupervised replicas of node %s: %w", node, err))...)
		}
		for _, e := range resp.GetExecutions() {
			id := e.GetExecution().GetWorkflowId()
			if seen[id] {
				continue
			}
			seen[id] = true
			if _, ok := e.GetMemo().GetFields()[replica.MemoStopPending]; !ok {
				continue
			}
			stop, ok, err := r.pendingStop(ctx, id, node)
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				out = append(out, stop)
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, errors.Join(errs...)
		}
	}
}

// pendingStop is the stop the replica's last run keeps, if that run is the
// one that ended with it on node: a replica supervised again since (running,
// or ended otherwise) owns its container again or left it by choice.
func (r roster) pendingStop(ctx context.Context, workflowID, node string) (activities.StopInput, bool, error) {
	var stop activities.StopInput
	desc, err := r.c.DescribeWorkflowExecution(ctx, workflowID, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return stop, false, nil // gone with the retention period since the list
	}
	if err != nil {
		return stop, false, fmt.Errorf("describe %s: %w", workflowID, err)
	}
	info := desc.GetWorkflowExecutionInfo()
	attrs := info.GetSearchAttributes().GetIndexedFields()
	p, ok := info.GetMemo().GetFields()[replica.MemoStopPending]
	if !ok || info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED ||
		Keyword(attrs[replica.SearchAttrNode]) != node || Keyword(attrs[replica.SearchAttrState]) != string(workflows.StateUnsupervised) {
		return stop, false, nil
	}
	// A memo that does not decode to this replica's stop is not acted on:
	// nothing is stopped on a guess.
	if err := r.dc.FromPayload(p, &stop); err != nil {
		return stop, false, fmt.Errorf("the pending stop of %s: %w", workflowID, err)
	}
	if stop.ID.WorkflowID() != workflowID {
		return stop, false, fmt.Errorf("the pending stop of %s names %s", workflowID, stop.ID.Ref())
	}
	return stop, true, nil
}

// Keyword decodes a Keyword search attribute's value; missing or odd values are "".
func Keyword(p *commonpb.Payload) string {
	var s string
	if p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &s)
	}
	return s
}
