package workflows

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/vigil-run/vigil/metrics"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/runtime"
)

// The workflow counts each decision once, with the replica's service: the
// counters equal what the state query reports.
func TestMetricsCountDecisions(t *testing.T) {
	m := metrics.New()
	h, closeH, err := m.Handler()
	require.NoError(t, err)
	defer closeH()
	n := &node{exits: crashes(1000, 1)}
	env := newEnvWith(t, n, func(s *testsuite.WorkflowTestSuite) { s.SetMetricsHandler(h) })
	unsuperviseAt(env, 10*time.Minute-time.Second)

	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())

	v := queryState(t, env)
	backoffs := 0
	for _, e := range v.Events {
		if e.Type == EventCrashLoopBackOff {
			backoffs++
		}
	}
	require.Equal(t, 24, v.TotalRestarts)
	require.Equal(t, 20, backoffs)
	require.Equal(t, map[string]float64{
		metrics.ContainerRestarts: 24,
		metrics.CrashLoopBackoffs: 20,
		metrics.ContainerExits:    25, // every start's watch returned a crash
	}, map[string]float64{
		metrics.ContainerRestarts: testutil.ToFloat64(m.Counter(metrics.ContainerRestarts, "shop", "api", "")),
		metrics.CrashLoopBackoffs: testutil.ToFloat64(m.Counter(metrics.CrashLoopBackoffs, "shop", "api", "")),
		metrics.ContainerExits:    testutil.ToFloat64(m.Counter(metrics.ContainerExits, "shop", "api", string(runtime.ExitExited))),
	})
	// Latency is recorded for the immediate restarts only, not the delayed ones.
	require.EqualValues(t, 5, m.RestartLatencyCount())
}
