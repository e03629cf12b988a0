package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
)

// onDeleteReplica answers DeleteReplica in the scripted cluster: the
// replica's supervision ends; the ones in left are on a node without a
// worker (their container stays until one runs).
func onDeleteReplica(env *testsuite.TestWorkflowEnvironment, c *cluster, left map[string]bool) {
	env.OnActivity(replica.DeleteReplicaName, mock.Anything, mock.Anything).Return(func(_ context.Context, in DeleteReplicaInput) (DeletedReplica, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		ref := in.ID.Ref()
		c.record("end %s keep=%v volumes=%v", ref, in.KeepContainer, in.Volumes)
		delete(c.replicas, ref)
		if left[ref] {
			return DeletedReplica{Note: "unsupervised; container NOT stopped", Left: true}, nil
		}
		return DeletedReplica{Note: "unsupervised; container stopped and removed"}, nil
	})
}

// Delete ends every replica (a Completed one's container removed on its
// node), says what it did to each, and ends the workflow; an apply meanwhile
// is refused.
func TestDeleteEndsEveryReplicaThenTheWorkflow(t *testing.T) {
	c := &cluster{}
	env := newDeploymentEnv(t, c)
	onDeleteReplica(env, c, map[string]bool{"shop/api-rep-2": true})
	first, del, late := &updateResult{}, &updateResult{}, &updateResult{}
	applyAt(env, time.Minute, shopSpec(2, "v1", policy.Policy{}), first)
	env.RegisterDelayedCallback(func() {
		// A replica of the deployment whose container completed: its run
		// is closed, its exited container still on the node.
		c.mu.Lock()
		done := c.replicas["shop/api-rep-1"]
		done.ID.Replica, done.Closed, done.State = 3, true, StateCompleted
		c.replicas["shop/api-rep-3"] = done
		c.mu.Unlock()
		sendUpdate(env, replica.UpdateDelete, DeleteRequest{Volumes: true}, del)
		sendUpdate(env, replica.UpdateApply, ApplyRequest{Spec: shopSpec(2, "v2", policy.Policy{})}, late)
	}, 2*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError(), "a delete ends the workflow")
	require.NoError(t, del.rejected)
	require.NoError(t, del.err)
	require.Equal(t, DeleteResult{Deployment: "shop", Generation: 1, Replicas: []DeletedReplica{
		{ID: "shop/api-rep-1", Node: "node-a", Note: "unsupervised; container stopped and removed"},
		{ID: "shop/api-rep-2", Node: "node-a", Note: "unsupervised; container NOT stopped", Left: true},
		{ID: "shop/api-rep-3", Node: "node-a", Note: "its supervision had ended (Completed); container removed"},
	}}, del.value)
	require.ErrorContains(t, late.rejected, "being deleted")
	require.Subset(t, c.log, []string{"end shop/api-rep-1 keep=false volumes=true", "end shop/api-rep-2 keep=false volumes=true", "delete shop/api-rep-3 remove=true"})
	require.NotContains(t, c.replicas, "shop/api-rep-1")
	require.NotContains(t, c.replicas, "shop/api-rep-2")
}

// A deployment made again after a delete counts on from the generation the
// deleted one reached.
func TestDeploymentAfterDeleteCountsOn(t *testing.T) {
	c := &cluster{}
	env := newDeploymentEnv(t, c)
	first := &updateResult{}
	applyAt(env, time.Minute, shopSpec(1, "v1", policy.Policy{}), first)
	env.RegisterDelayedCallback(env.CancelWorkflow, 2*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop", AfterGeneration: 4})
	require.Equal(t, 5, planOf(t, first).Generation)
	require.Equal(t, []string{"create shop/api-rep-1 gen 5"}, c.log)
}
