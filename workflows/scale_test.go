package workflows

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
)

// payloadLimit is Temporal's limit on one payload (an activity's input or
// result, an update's result, a continue-as-new's input).
const payloadLimit = 2 << 20

// patient gives a workflow task the time a real worker gives it
// (DeadlockDetectionTimeout): a task of this test plans 10,000 replicas a
// few times, which a test machine shared with others may stretch past the
// SDK's default of 1 s.
func patient(env *testsuite.TestWorkflowEnvironment) {
	env.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: DeadlockDetectionTimeout})
}

// A deployment of 10,000 replicas applies, rolls and continues as new:
// each step acts on at most maxStepReplicas replicas (Temporal fails a run
// with more than 2,000 activities pending), and no payload nears 2 MiB.
func TestDeploymentOf10000Replicas(t *testing.T) {
	const n = 10000
	c := &cluster{}
	env := newDeploymentEnv(t, c)
	env.SetTestTimeout(5 * time.Minute)
	patient(env)
	first, second := &updateResult{}, &updateResult{}
	v2 := shopSpec(n, "v2", policy.Policy{})
	v2.Services[0].Update.MaxUnavailable = n
	applyAt(env, time.Minute, shopSpec(n, "v1", policy.Policy{}), first)
	applyAt(env, 2*time.Minute, v2, second)
	// 1 apply, 20 create steps, 1 apply, then 3 of the 20 replacement steps.
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop", ContinueAsNewAfter: 25})
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)

	require.Len(t, planOf(t, second).Plan, n)
	for _, res := range []*updateResult{first, second} {
		raw, err := json.Marshal(planOf(t, res))
		require.NoError(t, err)
		require.Less(t, len(raw), payloadLimit/2, "the apply's answer")
	}
	require.Less(t, len(can.Input.GetPayloads()[0].GetData()), payloadLimit/2, "the carry")
	require.LessOrEqual(t, c.maxCreating, maxStepReplicas)
	require.LessOrEqual(t, c.maxDown, maxStepReplicas, "replacements bounded per step, not by max_unavailable")
	replaced := 0
	for _, l := range c.log {
		if strings.HasPrefix(l, "replace ") {
			replaced++
		}
	}
	require.Equal(t, 3*maxStepReplicas, replaced, "three replacement steps in the first run")
	require.LessOrEqual(t, c.maxObserved, observePageSize)
	var next DeploymentInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, 2, next.Carry.Generation)
	require.Len(t, next.Carry.Compact.Replicas, n)

	// The next run rolls the rest out.
	env2 := newDeploymentEnv(t, c)
	env2.SetTestTimeout(5 * time.Minute)
	patient(env2)
	var st RolloutStatus
	var records json.RawMessage // what the CLI reads (QueryReplicasCompact)
	env2.RegisterDelayedCallback(func() {
		st = rollout(t, env2)
		v, err := env2.QueryWorkflow(replica.QueryReplicasCompact)
		require.NoError(t, err)
		require.NoError(t, v.Get(&records))
		env2.CancelWorkflow()
	}, time.Minute)
	next.ContinueAsNewAfter = 0
	env2.ExecuteWorkflow(Deployment, next)
	require.Equal(t, RolloutComplete, st.State, st.Reason)
	require.Equal(t, n, st.Updated)
	for _, r := range c.replicas {
		require.Equal(t, []string{"v2"}, r.Config.Spec.Args)
	}
	require.Less(t, len(records), payloadLimit/2, "the replicas query's answer")
	var compact CompactReplicas
	require.NoError(t, json.Unmarshal(records, &compact))
	got := compact.Records("shop")
	require.Len(t, got, n)
	for _, r := range got {
		require.Equal(t, []string{"v2"}, r.Config.Spec.Args, r.ID.Ref())
	}
}
