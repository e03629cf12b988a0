package workflows

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/replica"
)

// The node workflow tells its replicas when its lease lapses (its watch's
// heartbeat timed out) and comes back, and, after a drain update, that it is draining, runs the drain,
// and then that it is cordoned; the state is carried on.
func TestNodeLeaseAndDrain(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(NodeWatch, workflow.RegisterOptions{Name: replica.NodeWorkflowName})
	env.RegisterActivity(activities.New(nil, activities.Options{}))
	for name, fn := range map[string]any{
		replica.AwaitNodeLeaseName:     func(context.Context, NodeLeaseInput) (NodeLease, error) { return NodeLease{}, nil },
		replica.NotifyNodeReplicasName: func(context.Context, NotifyNodeReplicasInput) (int, error) { return 0, nil },
		replica.DrainNodeName:          func(context.Context, DrainInput) (DrainResult, error) { return DrainResult{}, nil },
	} {
		env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
	release := make(chan struct{})
	defer close(release)
	block := func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-release:
			return errors.New("test over")
		}
	}
	var mu sync.Mutex
	watches, waits, drains := 0, 0, 0
	env.OnActivity(replica.WatchNodeName, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, _ activities.WatchNodeInput) error {
			mu.Lock()
			watches++
			k := watches
			mu.Unlock()
			if k == 1 {
				// Lapsed: the server ends the watch with a heartbeat timeout
				// its retry policy does not retry (the test environment
				// would retry any timeout, not a non-retryable failure).
				return temporal.NewNonRetryableApplicationError("lapsed", "Test", temporal.NewHeartbeatTimeoutError())
			}
			return block(ctx)
		})
	var renewed time.Time
	var notices []NodeLeaseNotice
	env.OnActivity(replica.AwaitNodeLeaseName, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in NodeLeaseInput) (NodeLease, error) {
			mu.Lock()
			waits++
			k := waits
			mu.Unlock()
			if k == 1 && !in.RenewedAfter.IsZero() {
				renewed = in.RenewedAfter
				return NodeLease{LastRenewal: renewed.Add(time.Minute)}, nil // back
			}
			return NodeLease{}, block(ctx)
		})
	env.OnActivity(replica.NotifyNodeReplicasName, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in NotifyNodeReplicasInput) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			notices = append(notices, in.Notice)
			return 1, nil
		})
	env.OnActivity(replica.DrainNodeName, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in DrainInput) (DrainResult, error) {
			mu.Lock()
			defer mu.Unlock()
			drains++
			return DrainResult{Moved: []string{"shop/api-rep-1"}}, nil
		})
	drain := &updateResult{}
	var after NodeView
	env.RegisterDelayedCallback(func() { sendUpdate(env, replica.UpdateDrain, nil, drain) }, 50*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(replica.QueryNode)
		require.NoError(t, err)
		require.NoError(t, v.Get(&after))
		env.CancelWorkflow()
	}, 300*time.Millisecond)
	env.ExecuteWorkflow(NodeWatch, NodeInput{Node: "n1"})

	require.NoError(t, drain.rejected)
	require.NoError(t, drain.err)
	require.True(t, after.Cordoned)
	require.False(t, after.Draining, "the drain is over")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 1, drains)
	require.Equal(t, 2, watches, "the next watch starts after a lapse")
	require.Equal(t, 1, waits, "the lease is read only while it is lapsed")
	require.ElementsMatch(t, []NodeLeaseNotice{
		{Node: "n1", LastRenewal: renewed, Lost: true},
		{Node: "n1", LastRenewal: renewed.Add(time.Minute)},
		{Node: "n1", State: NodeDraining},
		{Node: "n1", State: NodeCordoned},
	}, notices)
}
