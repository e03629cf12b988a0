package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/replica"
)

// A replica and its node's lease (since v0.3.0). The node's workflow says
// when the lease lapsed (the notice names its last renewal, the server's
// clock) and when it came back. The replica then keeps a durable timer until
// the lease is its lost_after old: if the lease has not come back by then,
// a movable replica (placement) moves to another eligible Ready node,
// recording Rescheduled{from, to, NodeLost}, and starts there; a pinned one
// shows NodeLost. The lost node fences its copy before (lease lane): at
// lost_after minus a margin on its own clock from the send of its last
// renewal, which is before the server recorded it, so the copy is gone when
// the timer fires, and the move never makes a second running copy.

// PlanMoveInput asks where a replica of a lost node may go.
type PlanMoveInput struct {
	ID replica.ID `json:"id"`
	// From is the lost node; its lease lapsed after LastRenewal.
	From        string    `json:"from"`
	LastRenewal time.Time `json:"last_renewal,omitzero"`
	// Placement are the eligible nodes.
	Placement []string `json:"placement"`
	// Drain: From is drained, not lost (its lease is not asked about).
	Drain bool `json:"drain,omitempty"`
}

// MovePlan is PlanMove's answer: From's lease came back (Renewed), or the
// node to move to (To; empty: no eligible node is Ready, Why says so).
type MovePlan struct {
	Renewed bool   `json:"renewed,omitempty"`
	To      string `json:"to,omitempty"`
	Why     string `json:"why,omitempty"`
}

// moveRetry is the pause before a lost node's replica looks again for a
// node to move to, when none was Ready.
const moveRetry = 5 * time.Second

// takeLeaseNotice takes one node-lease signal from c. A notice about
// another node (one the replica left) or a repeat changes nothing.
func (s *supervisor) takeLeaseNotice(ctx workflow.Context, c workflow.ReceiveChannel) {
	var n NodeLeaseNotice
	if !receiveSignal(c, &n) || n.Node != s.in.Node {
		s.ignoredThisRun++
		return
	}
	if n.State != "" {
		if s.st.NodeState != NodeLost && s.st.NodeState != n.State {
			s.st.NodeState, s.st.NodeSince = n.State, workflow.Now(ctx)
		}
		return
	}
	if !n.Lost {
		s.leaseBack(ctx)
		return
	}
	if !s.st.NodeLapsedAt.IsZero() && !n.LastRenewal.After(s.st.NodeLapsedAt) {
		s.ignoredThisRun++
		return
	}
	s.st.NodeLapsedAt = n.LastRenewal
	s.armMove(ctx, s.st.NodeLapsedAt.Add(s.in.NodeLostAfter()).Sub(workflow.Now(ctx)))
}

// armMove sets the durable timer after which the replica acts on its
// node's lapsed lease (nodeLost).
func (s *supervisor) armMove(ctx workflow.Context, d time.Duration) {
	s.disarmMove()
	if d <= 0 {
		f, set := workflow.NewFuture(ctx)
		set.Set(nil, nil)
		s.moveDue = f
		return
	}
	tctx, cancel := workflow.WithCancel(ctx)
	s.moveDue, s.moveCancel = workflow.NewTimerWithOptions(tctx, d,
		workflow.TimerOptions{Summary: fmt.Sprintf("node %s lost after %s", s.in.Node, human(s.in.NodeLostAfter()))}), cancel
}

func (s *supervisor) disarmMove() {
	if s.moveCancel != nil {
		s.moveCancel()
	}
	s.moveDue, s.moveCancel = nil, nil
}

// leaseBack: the node's lease came back before the replica moved.
func (s *supervisor) leaseBack(ctx workflow.Context) {
	s.disarmMove()
	s.st.NodeLapsedAt = time.Time{}
	if s.st.NodeState == NodeLost {
		s.st.NodeState, s.st.NodeSince = NodeReady, workflow.Now(ctx)
	}
	if s.st.State == StateNodeLost {
		s.setState(ctx, StateRunning)
	}
}

// nodeLost acts once the node's lease is lost_after old (moveDue): unless
// it came back meanwhile, the node is Lost, and a movable replica is told
// where to go (empty: nowhere yet, or pinned: a Running one is NodeLost).
func (s *supervisor) nodeLost(ctx workflow.Context) (string, error) {
	s.disarmMove()
	var plan MovePlan
	in := PlanMoveInput{ID: s.in.ID, From: s.in.Node, LastRenewal: s.st.NodeLapsedAt, Placement: s.in.Placement}
	err := s.activity(ctx, s.moveOptions(ctx), replica.PlanMoveName, in, &plan, "choosing a node to move to", nil)
	if errors.Is(err, errUnsupervised) {
		return "", err
	}
	if err != nil {
		workflow.GetLogger(ctx).Warn("no move plan; trying again", "node", s.in.Node, "error", err)
		s.armMove(ctx, moveRetry)
		return "", nil
	}
	if plan.Renewed {
		s.leaseBack(ctx)
		return "", nil
	}
	if s.st.NodeState != NodeLost {
		s.st.NodeState, s.st.NodeSince = NodeLost, workflow.Now(ctx)
	}
	if !s.in.Movable() {
		if s.st.State == StateRunning {
			s.setState(ctx, StateNodeLost)
		}
		return "", nil
	}
	if plan.To == "" {
		workflow.GetLogger(ctx).Warn("node lost, and no node to move to; trying again", "node", s.in.Node, "why", plan.Why)
		s.armMove(ctx, moveRetry)
	}
	return plan.To, nil
}

// lostDue reports whether the node's lapsed lease is lost_after old.
func (s *supervisor) lostDue() bool { return s.moveDue != nil && s.moveDue.IsReady() }

// untilLost caps a wait d at the moment the node's lapsed lease is
// lost_after old (at least a second), so a failing start moves then.
func (s *supervisor) untilLost(ctx workflow.Context, d time.Duration) time.Duration {
	if s.st.NodeLapsedAt.IsZero() || !s.in.Movable() {
		return d
	}
	return max(min(d, s.st.NodeLapsedAt.Add(s.in.NodeLostAfter()).Sub(workflow.Now(ctx))), time.Second)
}

// moveTo moves the running replica to node to and starts it there.
func (s *supervisor) moveTo(ctx workflow.Context, to, reason string) error {
	s.relocate(ctx, to, reason)
	if _, err := s.start(ctx, workflow.Now(ctx), untilRunning); err != nil {
		return err
	}
	s.setState(ctx, StateRunning)
	return nil
}

// relocate makes node to the replica's node; the next start is there. The
// container on the node it leaves is not touched from here: that node is
// lost (it fenced its copy) or drained (stopped before), and its worker
// removes it when it returns (containers of replicas that live elsewhere).
func (s *supervisor) relocate(ctx workflow.Context, to, reason string) {
	from := s.in.Node
	why := reason
	s.emitEvent(ctx, Event{Type: EventRescheduled, From: from, To: to, Reason: &why})
	s.in.Node = to
	s.st.NodeLapsedAt = time.Time{}
	s.st.NodeState, s.st.NodeSince = "", time.Time{}
	s.st.TaskPID, s.st.TaskStartedAt, s.st.Network = 0, time.Time{}, nil
	if s.st.State != StatePending {
		s.st.State = StateRestarting
	}
	s.publishState(ctx) // VigilNode too: the node's reconciliation follows it
	s.why = fmt.Sprintf("start on %s (moved from %s: %s)", to, from, reason)
}

// refuseMove is why a move (a drain) does not apply to this replica.
func (s *supervisor) refuseMove() error {
	switch {
	case !s.in.Movable():
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"move: %s is pinned to node %s (node:); only replicas with placement.nodes move", s.in.ID.Ref(), s.in.Node), replica.ErrTypePinned, nil)
	case s.st.State == StateCompleted:
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("move: %s is Completed; its supervision has ended", s.in.ID.Ref()), replica.ErrTypePinned, nil)
	}
	return nil
}

// moveAway carries out a move off a drained node: choose a node, stop and
// remove the container here (its grace), start it there, and answer once
// it ran min_ready (or why not). A replica no longer on that node is done.
func (s *supervisor) moveAway(ctx workflow.Context, c *command) error {
	req := c.move
	if s.in.Node != req.From {
		c.result = ReconfigureResult{Ready: true}
		s.finish(c, nil)
		return nil
	}
	var plan MovePlan
	in := PlanMoveInput{ID: s.in.ID, From: s.in.Node, Placement: s.in.Placement, Drain: true}
	err := s.activity(ctx, s.moveOptions(ctx), replica.PlanMoveName, in, &plan, "choosing a node to move to", nil)
	if err != nil {
		return s.answer(c, err)
	}
	if plan.To == "" {
		c.result = ReconfigureResult{Reason: fmt.Sprintf("%s: no node to move to: %s", s.in.ID.Ref(), plan.Why)}
		s.finish(c, nil)
		return nil
	}
	if _, err := s.stop(ctx, true, false, "stop and remove before the move off "+req.From); err != nil {
		if errors.Is(err, errUnsupervised) {
			return s.answer(c, err)
		}
		c.result = ReconfigureResult{Reason: fmt.Sprintf("%s: stopping the container on %s failed: %s", s.in.ID.Ref(), req.From, s.failure(err))}
		s.finish(c, nil)
		return nil
	}
	s.relocate(ctx, plan.To, req.Reason)
	res, err := s.start(ctx, time.Time{}, oneAttempt)
	if errors.Is(err, errUnsupervised) {
		return s.answer(c, err)
	}
	if err != nil {
		// Restarting: the main loop keeps trying, on the new node.
		c.result = ReconfigureResult{Reason: fmt.Sprintf("%s: the container did not start on %s: %s", s.in.ID.Ref(), plan.To, s.failure(err))}
		s.finish(c, nil)
		return nil
	}
	s.setState(ctx, StateRunning)
	if res.ExitedSince {
		c.result = ReconfigureResult{Reason: fmt.Sprintf("%s: the container could not run on %s: %s", s.in.ID.Ref(), plan.To, res.StartError)}
		s.finish(c, nil)
		return nil
	}
	after := res.StartedAt
	if after.IsZero() {
		after = workflow.Now(ctx)
	}
	c.result, err = s.minReady(ctx, &ReconfigureRequest{Generation: s.st.Generation, MinReady: req.MinReady}, after)
	return s.answer(c, err)
}

// moveOptions: PlanMove reads the server, from any worker.
func (s *supervisor) moveOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           workflow.GetInfo(ctx).TaskQueueName,
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
		Summary:             "choose a node for " + s.in.ID.Ref() + " (node " + s.in.Node + " lost)",
	})
}
