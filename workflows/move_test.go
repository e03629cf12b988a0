package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// planMove is the PlanMove activity of newEnv's environments.
var planMove = noPlanMove

func noPlanMove(context.Context, PlanMoveInput) (MovePlan, error) {
	return MovePlan{}, errors.New("no PlanMove in this test")
}

// leaseEnv is a replica on node-a (movable over node-a and node-b when
// placed) with PlanMove answering plan; it records the queue of each start
// and each PlanMove's input.
type leaseEnv struct {
	env    *testsuite.TestWorkflowEnvironment
	n      *node
	queues []string
	plans  []PlanMoveInput
}

func newLeaseEnv(t *testing.T, placed bool, plan func(PlanMoveInput) MovePlan, startErrs ...error) (*leaseEnv, SupervisionInput) {
	l := &leaseEnv{n: &node{startErrs: startErrs}}
	l.env = newEnv(t, l.n)
	planMove = func(_ context.Context, in PlanMoveInput) (MovePlan, error) {
		l.n.mu.Lock()
		defer l.n.mu.Unlock()
		l.plans = append(l.plans, in)
		return plan(in), nil
	}
	t.Cleanup(func() { planMove = noPlanMove })
	l.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == replica.EnsureRunningName {
			l.n.mu.Lock()
			l.queues = append(l.queues, info.TaskQueue)
			l.n.mu.Unlock()
		}
	})
	in := input(policy.Policy{})
	in.LostAfter = 10 * time.Second
	if placed {
		in.Placement = []string{"node-a", "node-b"}
	}
	return l, in
}

// lapse signals, at mock time at, that node's lease lapsed, last renewed
// ago before.
func (l *leaseEnv) notice(at time.Duration, node string, lost bool, ago time.Duration) {
	l.env.RegisterDelayedCallback(func() {
		l.env.SignalWorkflow(replica.SignalNodeLease, NodeLeaseNotice{Node: node, Lost: lost, LastRenewal: l.env.Now().Add(-ago)})
	}, at)
}

// A movable replica of a lost node moves once the lease is lost_after old:
// Rescheduled{from, to, NodeLost}, its container started on the new node's
// queue, its node published; a notice about another node changes nothing.
func TestLostNodeReplicaMoves(t *testing.T) {
	l, in := newLeaseEnv(t, true, func(PlanMoveInput) MovePlan { return MovePlan{To: "node-b"} })
	l.notice(time.Minute, "node-x", true, 8*time.Second)
	l.notice(2*time.Minute, "node-a", true, 8*time.Second) // lost_after 10s: due at 2m2s
	var before, after StateView
	l.env.RegisterDelayedCallback(func() { before = stateNow(l.env) }, 2*time.Minute+time.Second)
	l.env.RegisterDelayedCallback(func() { after = stateNow(l.env) }, 2*time.Minute+3*time.Second)
	unsuperviseAt(l.env, 3*time.Minute)
	l.env.ExecuteWorkflow(Supervise, in)
	require.NoError(t, l.env.GetWorkflowError())

	require.Equal(t, "node-a", before.Node, "not before lost_after")
	require.Equal(t, StateRunning, after.State)
	require.Equal(t, "node-b", after.Node)
	ev := after.Events[len(after.Events)-1]
	require.Equal(t, EventRescheduled, ev.Type)
	require.Equal(t, "node-a", ev.From)
	require.Equal(t, "node-b", ev.To)
	require.Equal(t, ReasonNodeLost, *ev.Reason)
	require.Equal(t, []string{replica.NodeTaskQueue("node-a"), replica.NodeTaskQueue("node-b")}, l.queues)
	require.Len(t, l.plans, 1)
	require.Equal(t, PlanMoveInput{ID: replicaID, From: "node-a", LastRenewal: l.plans[0].LastRenewal, Placement: in.Placement}, l.plans[0])
	require.Equal(t, 0, after.TotalRestarts, "a move is not a crash")
}

// The lease back before lost_after: nothing moves, no plan is asked for.
func TestLeaseBackBeforeMove(t *testing.T) {
	l, in := newLeaseEnv(t, true, func(PlanMoveInput) MovePlan { return MovePlan{To: "node-b"} })
	l.notice(time.Minute, "node-a", true, 8*time.Second)
	l.notice(time.Minute+time.Second, "node-a", false, 0)
	unsuperviseAt(l.env, 2*time.Minute)
	l.env.ExecuteWorkflow(Supervise, in)
	require.NoError(t, l.env.GetWorkflowError())
	require.Empty(t, l.plans)
	require.Equal(t, []string{replica.NodeTaskQueue("node-a")}, l.queues)
}

// A pinned replica is never moved: it shows NodeLost (node_state Lost)
// while the lease is lost, and Running once it is back.
func TestPinnedReplicaShowsNodeLost(t *testing.T) {
	l, in := newLeaseEnv(t, false, func(PlanMoveInput) MovePlan { return MovePlan{} })
	l.notice(time.Minute, "node-a", true, 8*time.Second)
	var lost, back StateView
	l.env.RegisterDelayedCallback(func() { lost = stateNow(l.env) }, time.Minute+5*time.Second)
	l.notice(2*time.Minute, "node-a", false, 0)
	l.env.RegisterDelayedCallback(func() { back = stateNow(l.env) }, 2*time.Minute+time.Second)
	unsuperviseAt(l.env, 3*time.Minute)
	l.env.ExecuteWorkflow(Supervise, in)
	require.NoError(t, l.env.GetWorkflowError())
	require.Equal(t, StateNodeLost, lost.State)
	require.Equal(t, string(NodeLost), *lost.NodeState)
	require.Equal(t, StateRunning, back.State)
	require.Equal(t, string(NodeReady), *back.NodeState)
	require.Equal(t, []string{replica.NodeTaskQueue("node-a")}, l.queues)
}

// A start that keeps failing on a lost node is tried on another node once
// the lease is lost_after old.
func TestFailingStartOnLostNodeMoves(t *testing.T) {
	boom := func() error {
		return temporal.NewNonRetryableApplicationError("containerd does not answer", "Test", nil)
	}
	l, in := newLeaseEnv(t, true, func(PlanMoveInput) MovePlan { return MovePlan{To: "node-b"} }, boom(), boom())
	l.notice(time.Second, "node-a", true, 8*time.Second)
	unsuperviseAt(l.env, time.Minute)
	l.env.ExecuteWorkflow(Supervise, in)
	require.NoError(t, l.env.GetWorkflowError())
	require.Equal(t, []string{replica.NodeTaskQueue("node-a"), replica.NodeTaskQueue("node-a"), replica.NodeTaskQueue("node-b")}, l.queues)
	require.Len(t, l.n.starts, 1)
}

// A drain's move: the container is stopped and removed on the drained
// node, started on the one PlanMove chose, watched for min_ready, and the
// move recorded (Drained); a pinned replica refuses it, typed.
func TestDrainMovesReplica(t *testing.T) {
	l, in := newLeaseEnv(t, true, func(in PlanMoveInput) MovePlan {
		if !in.Drain {
			return MovePlan{}
		}
		return MovePlan{To: "node-b"}
	})
	res := &updateResult{}
	whenWatching(l.env, l.n, 1, 0, func() {
		sendUpdate(l.env, replica.UpdateMove, MoveRequest{From: "node-a", Reason: ReasonDrained, MinReady: time.Second}, res)
	})
	end := unsuperviseWhenWatching(l.env, l.n, 3, 0) // after min_ready's watch
	l.env.ExecuteWorkflow(Supervise, in)
	require.NoError(t, l.env.GetWorkflowError())
	require.NoError(t, res.rejected)
	require.NoError(t, res.err)
	require.True(t, res.value.(ReconfigureResult).Ready, "%+v", res.value)
	require.Len(t, l.n.stops, 1)
	require.True(t, l.n.stops[0].Remove)
	require.Equal(t, []string{replica.NodeTaskQueue("node-a"), replica.NodeTaskQueue("node-b")}, l.queues)
	after := end.before
	require.Equal(t, "node-b", after.Node)
	ev := after.Events[len(after.Events)-1]
	require.Equal(t, EventRescheduled, ev.Type)
	require.Equal(t, ReasonDrained, *ev.Reason)

	l2, pinned := newLeaseEnv(t, false, func(PlanMoveInput) MovePlan { return MovePlan{To: "node-b"} })
	res2, end2 := &updateResult{}, &updateResult{}
	whenWatching(l2.env, l2.n, 1, 0, func() {
		sendUpdate(l2.env, replica.UpdateMove, MoveRequest{From: "node-a", Reason: ReasonDrained}, res2)
		sendUpdate(l2.env, replica.UpdateUnsupervise, UnsuperviseRequest{}, end2)
	})
	l2.env.ExecuteWorkflow(Supervise, pinned)
	require.ErrorContains(t, res2.rejected, "pinned to node node-a")
}

// A container its node's fence ended, reported once the lease is back and
// before the move: restarted in place with event Fenced, not counted as a
// crash. The same exit of a pinned replica (it has no fence) is a crash.
func TestFencedRestartsInPlace(t *testing.T) {
	for _, placed := range []bool{true, false} {
		l, in := newLeaseEnv(t, placed, func(PlanMoveInput) MovePlan { return MovePlan{To: "node-b"} })
		l.notice(time.Minute, "node-a", true, 2*time.Second) // lost_after 10s: due at 1m8s
		l.notice(time.Minute+2*time.Second, "node-a", false, 0)
		l.env.RegisterDelayedCallback(func() {
			l.env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: replicaID, Node: "node-a",
				Exit: runtime.Exit{ExitCode: 137, ExitedAt: l.env.Now().Add(-time.Second), Cause: runtime.ExitFenced}})
		}, time.Minute+3*time.Second)
		var after StateView
		l.env.RegisterDelayedCallback(func() { after = stateNow(l.env) }, time.Minute+10*time.Second)
		unsuperviseAt(l.env, 2*time.Minute)
		l.env.ExecuteWorkflow(Supervise, in)
		require.NoError(t, l.env.GetWorkflowError())
		require.Equal(t, StateRunning, after.State)
		require.Equal(t, "node-a", after.Node)
		require.Empty(t, l.plans)
		require.Equal(t, []string{replica.NodeTaskQueue("node-a"), replica.NodeTaskQueue("node-a")}, l.queues)
		last := after.Events[len(after.Events)-1]
		if placed {
			require.Equal(t, EventFenced, last.Type)
			require.Equal(t, 0, after.TotalRestarts, "a fence is not a crash")
			require.Equal(t, string(runtime.ExitFenced), *after.LastExitReason)
		} else {
			require.Equal(t, EventContainerRestarted, last.Type)
			require.Equal(t, 1, after.TotalRestarts, "a pinned replica's exit is a crash")
		}
	}
}

// A movable replica whose start no worker takes, with no lapse heard (its
// node never ran a worker), asks whether the node's lease was renewed
// within lost_after, and moves if not.
func TestStartNoWorkerTakesMovesWithoutNotice(t *testing.T) {
	l, in := newLeaseEnv(t, true, func(p PlanMoveInput) MovePlan { return MovePlan{To: "node-b"} }, noWorkerErr())
	unsuperviseAt(l.env, time.Minute)
	start := l.env.Now()
	l.env.ExecuteWorkflow(Supervise, in)
	require.NoError(t, l.env.GetWorkflowError())
	require.Equal(t, []string{replica.NodeTaskQueue("node-a"), replica.NodeTaskQueue("node-b")}, l.queues)
	require.Len(t, l.plans, 1)
	require.Equal(t, in.NodeLostAfter(), start.Sub(l.plans[0].LastRenewal), "asked about renewals within lost_after")
}
