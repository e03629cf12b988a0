package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/mocks"

	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/workflows"
)

// A rollout the deployment calls complete is complete only when every
// replica it wants is available: Running, healthy where it has probes, for
// min_ready. The others are named, with their state and why.
func TestRolloutCompleteOnlyWhenAvailable(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	str := func(s string) *string { return &s }
	code := func(c int) *int { return &c }
	want := func(n int) wantedReplica {
		return wantedReplica{id: replica.ID{Deployment: "shop", Service: "api", Replica: n}, minReady: 5 * time.Second}
	}
	running := func(n int, ranFor time.Duration) seenReplica {
		return seenReplica{view: workflows.StateView{ID: want(n).id.Ref(), State: workflows.StateRunning,
			RunningSince: str(now.Add(-ranFor).Format(time.RFC3339Nano))}}
	}
	done := workflows.RolloutStatus{Deployment: "shop", Generation: 2, State: workflows.RolloutComplete, Updated: 3, Total: 3}

	all := judgeRollout(done, []wantedReplica{want(1), want(2), want(3)},
		[]seenReplica{running(1, time.Minute), running(2, 5*time.Second), {view: workflows.StateView{State: workflows.StateCompleted}}}, now)
	require.Equal(t, workflows.RolloutComplete, all.State)
	require.Equal(t, 3, all.Available)
	require.Empty(t, all.NotReady)

	looping := seenReplica{view: workflows.StateView{ID: "shop/api-rep-2", State: workflows.StateCrashLoopBackOff,
		LastExitCode: code(137), LastExitReason: str("OOMKilled")}}
	unhealthy := running(3, time.Minute)
	unhealthy.view.Health = str("unhealthy")
	unhealthy.view.HealthDetail = str("http 503")
	got := judgeRollout(done, []wantedReplica{want(1), want(2), want(3), want(4)},
		[]seenReplica{running(1, 2*time.Second), looping, unhealthy, {missing: true}}, now)
	require.Equal(t, workflows.RolloutProgressing, got.State)
	require.Zero(t, got.Available)
	require.Equal(t, []notReady{
		{ID: "shop/api-rep-1", State: "Running", Reason: "running for 2s of min_ready 5s"},
		{ID: "shop/api-rep-2", State: "CrashLoopBackOff", Reason: "crash-loop backoff after exit 137 (OOMKilled)"},
		{ID: "shop/api-rep-3", State: "Running", Reason: "unhealthy: http 503"},
		{ID: "shop/api-rep-4", State: "Missing", Reason: "not supervised yet: the rollout creates it"},
	}, got.NotReady)

	// A paused rollout stays paused, and still names the replicas.
	paused := done
	paused.State, paused.Reason = workflows.RolloutPaused, "generation 2: shop/api-rep-2: ..."
	require.Equal(t, workflows.RolloutPaused, judgeRollout(paused, []wantedReplica{want(2)}, []seenReplica{looping}, now).State)

	// The JSON names are a contract.
	b, err := json.Marshal(got)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for _, k := range []string{"deployment", "generation", "state", "updated", "available", "total", "not_ready"} {
		require.Contains(t, m, k)
	}
	require.Equal(t, map[string]any{"id": "shop/api-rep-1", "state": "Running", "reason": "running for 2s of min_ready 5s"}, m["not_ready"].([]any)[0])
}

// --watch prints each change, one JSON document a line with --json, and
// ends with the rollout: exit 0 once complete.
func TestRolloutStatusWatch(t *testing.T) {
	c := mocks.NewClient(t)
	c.On("Close").Return()
	c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop", "").Return(describeRunning("run-1", "run-1"), nil)
	progressing := workflows.RolloutStatus{Deployment: "shop", Generation: 2, State: workflows.RolloutProgressing, Updated: 0, Total: 1}
	done := workflows.RolloutStatus{Deployment: "shop", Generation: 2, State: workflows.RolloutComplete, Updated: 1, Total: 1}
	c.On("QueryWorkflow", mock.Anything, "vigil/shop", "", replica.QueryRollout).Return(value{progressing}, nil).Twice()
	c.On("QueryWorkflow", mock.Anything, "vigil/shop", "", replica.QueryRollout).Return(value{done}, nil)
	spec := workflows.DeploymentSpec{Name: "shop", Services: []workflows.ServiceSpec{{Name: "api", Replicas: 1, Update: workflows.UpdateSettings{MinReady: time.Second}}}}
	c.On("QueryWorkflow", mock.Anything, "vigil/shop", "", replica.QueryDesired).Return(value{spec}, nil)
	since := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-1", "", replica.QueryState).Return(value{workflows.StateView{
		ID: "shop/api-rep-1", Deployment: "shop", Service: "api", Replica: 1, State: workflows.StateRunning, RunningSince: &since}}, nil)
	r := vigil(t, c, nil, "rollout", "status", "shop", "--watch", "--json")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != exitOK || len(lines) != 2 {
		t.Fatalf("watch: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	var last rolloutView
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &last))
	require.Equal(t, workflows.RolloutComplete, last.State)
	require.Equal(t, 1, last.Available)
}

// The CLI reads a deployment's records compactly (10,000 full records
// exceed what a query may answer); a run older than v0.3.0 refuses that
// query, and its full records are read instead.
func TestDeploymentReplicasCompactOrFull(t *testing.T) {
	rec := workflows.ReplicaRecord{ID: replica.ID{Deployment: "shop", Service: "api", Replica: 1}, Generation: 2, State: workflows.StateRunning,
		Config: workflows.ReplicaConfig{Spec: runtime.ContainerSpec{Image: "busybox", Args: []string{"v2"}}, Node: "n1"}}
	rec.Digest = workflows.ConfigDigest(rec.Config)
	for _, old := range []bool{false, true} {
		c := mocks.NewClient(t)
		c.On("DescribeWorkflowExecution", mock.Anything, "vigil/shop", "").Return(describeRunning("run-1", "run-1"), nil)
		if old {
			c.On("QueryWorkflow", mock.Anything, "vigil/shop", "", replica.QueryReplicasCompact).
				Return(nil, serviceerror.NewQueryFailed("unknown queryType replicas-compact"))
			c.On("QueryWorkflow", mock.Anything, "vigil/shop", "", replica.QueryReplicas).Return(value{[]workflows.ReplicaRecord{rec}}, nil)
		} else {
			c.On("QueryWorkflow", mock.Anything, "vigil/shop", "", replica.QueryReplicasCompact).
				Return(value{workflows.Compact([]workflows.ReplicaRecord{rec})}, nil)
		}
		got, err := deploymentReplicas(t.Context(), c, "shop")
		require.NoError(t, err, "old run: %v", old)
		require.Equal(t, []workflows.ReplicaRecord{rec}, got, "old run: %v", old)
	}
}
