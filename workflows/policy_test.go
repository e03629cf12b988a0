package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

func exitWith(code int, cause runtime.ExitReason, signal string) runtime.Exit {
	r := crash(code)
	r.Cause, r.Signal = cause, signal
	return r
}

func reasons(v StateView) []string {
	out := make([]string, len(v.Events))
	for i, e := range v.Events {
		if e.Reason != nil {
			out[i] = *e.Reason
		}
	}
	return out
}

// A rule maps exit 42 to Shutdown while exit 3 restarts; every event and the
// status say why.
func TestRuleShutsDownOnExit42(t *testing.T) {
	n := &node{exits: []runtime.Exit{exitWith(3, runtime.ExitExited, ""), exitWith(42, runtime.ExitExited, "")}}
	env := newEnv(t, n)
	p := policy.Policy{Rules: []policy.Rule{{ExitCodes: []int{42, 43}, Action: policy.ActionShutdown}}}
	unsuperviseAt(env, time.Minute)
	var v StateView
	env.RegisterDelayedCallback(func() { v = queryState(t, env) }, 30*time.Second)

	env.ExecuteWorkflow(Supervise, input(p))
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, StateShutdown, v.State)
	require.Len(t, n.starts, 2, "exit 3 restarted, exit 42 did not")
	require.Equal(t, []EventType{EventContainerRestarted, EventServiceShutdown}, eventTypes(v))
	require.Equal(t, []string{"Exited", "Exited"}, reasons(v))
	require.Equal(t, 42, *v.LastExitCode)
	require.Equal(t, "Exited", *v.LastExitReason)
	require.Nil(t, v.LastExitSignal, "no signal killed it")
	require.Nil(t, v.Health, "no probe, no health")
	// Which rule decided, and whose exit shut the service down.
	require.Equal(t, &RuleRef{Index: 0, Text: "{ exit_codes: [42, 43], action: shutdown }"}, v.LastRule)
	require.Equal(t, replicaID.Ref(), *v.ShutdownBy)
}

// Exponential backoff {initial: 2s, max: 8s, multiplier: 2}: crash-loop
// episodes wait 2 s, 4 s, 8 s, 8 s on durable timers.
func TestExponentialBackoffEpisodes(t *testing.T) {
	n := &node{exits: crashes(100, 1)}
	env := newEnv(t, n)
	start := env.Now()
	p := policy.Policy{MaxRestarts: 1, Exponential: &policy.Exponential{Initial: 2 * time.Second, Max: 8 * time.Second, Multiplier: 2}}
	var v StateView
	env.RegisterDelayedCallback(func() { v = queryState(t, env) }, 23*time.Second)
	unsuperviseAt(env, 25*time.Second)

	env.ExecuteWorkflow(Supervise, input(p))
	require.NoError(t, env.GetWorkflowError())
	// Initial start and the first restart at once; then 2, 4, 8, 8 s apart.
	want := []time.Duration{0, 0, 2 * time.Second, 6 * time.Second, 14 * time.Second, 22 * time.Second}
	require.Len(t, n.starts, len(want))
	for i, d := range want {
		requireTime(t, start.Add(d), n.starts[i], "start")
	}
	require.Equal(t, StateCrashLoopBackOff, v.State)
	require.Equal(t, formatTime(start.Add(30*time.Second)), *v.NextRestartAt, "the fifth episode waits the max too")
}

// A run of reset_after without a crash starts the backoff sequence again.
func TestBackoffResetsAfterAGoodRun(t *testing.T) {
	n := &node{exits: crashes(100, 1), exitsAt: []time.Duration{0, 0, 0, 2 * time.Minute}}
	env := newEnv(t, n)
	start := env.Now()
	p := policy.Policy{MaxRestarts: 1, RestartWindow: time.Hour,
		Exponential: &policy.Exponential{Initial: 2 * time.Second, Max: 8 * time.Second, Multiplier: 2, ResetAfter: time.Minute}}
	unsuperviseAt(env, 2*time.Minute+12*time.Second)

	env.ExecuteWorkflow(Supervise, input(p))
	require.NoError(t, env.GetWorkflowError())
	// Starts at 0, 0, 2 s, 6 s; the task started at 6 s runs two minutes,
	// so its crash at 2m6s backs off 2 s again, not 8 s; then 4 s.
	want := []time.Duration{0, 0, 2 * time.Second, 6 * time.Second, 2*time.Minute + 8*time.Second}
	require.GreaterOrEqual(t, len(n.starts), len(want))
	for i, d := range want {
		requireTime(t, start.Add(d), n.starts[i], "start")
	}
}

// The jitter is the same in every replay of one replica and differs between replicas.
func TestJitterIsPerReplica(t *testing.T) {
	deadline := func(id string) time.Duration {
		n := &node{exits: crashes(2, 1)}
		env := newEnv(t, n)
		start := env.Now()
		env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: id})
		p := policy.Policy{MaxRestarts: 1, Exponential: &policy.Exponential{Initial: 10 * time.Second, Max: time.Minute, Multiplier: 2, Jitter: 1}}
		var v StateView
		env.RegisterDelayedCallback(func() { v = queryState(t, env) }, time.Second)
		unsuperviseAt(env, 2*time.Second)
		env.ExecuteWorkflow(Supervise, input(p))
		require.NoError(t, env.GetWorkflowError())
		require.Equal(t, StateCrashLoopBackOff, v.State)
		at, err := time.Parse(time.RFC3339Nano, *v.NextRestartAt)
		require.NoError(t, err)
		wait := at.Sub(start)
		require.True(t, wait >= 10*time.Second && wait < 20*time.Second, "waits %s, want 10 s plus up to 100%%", wait)
		return wait
	}
	a, b := deadline("vigil/shop/api-rep-1"), deadline("vigil/shop/api-rep-2")
	require.NotEqual(t, a, b, "two replicas back off in lockstep")
	require.Equal(t, a, deadline("vigil/shop/api-rep-1"), "one replica's jitter must be the same every time")
}

// A liveness failure is a crash with reason Unhealthy, even when the stopped
// process exits 0; the status names the signal that stopped it.
func TestUnhealthyExitRestarts(t *testing.T) {
	n := &node{exits: []runtime.Exit{
		exitWith(143, runtime.ExitUnhealthy, "SIGTERM"),
		exitWith(0, runtime.ExitUnhealthy, ""),
		exitWith(137, runtime.ExitOOMKilled, "SIGKILL"),
	}}
	env := newEnv(t, n)
	in := input(policy.Default())
	in.Spec.Health = &runtime.Health{Liveness: &runtime.Probe{Exec: []string{"true"}, Period: time.Second, Timeout: time.Second, FailureThreshold: 3}}
	var first StateView
	whenWatching(env, n, 1, 0, func() {
		first = queryState(t, env)
		env.SignalWorkflow(replica.SignalHealth, HealthReport{Status: runtime.HealthHealthy})
	})
	var healthy StateView
	whenWatching(env, n, 1, time.Second, func() {
		// A late report about an earlier task changes nothing.
		env.SignalWorkflow(replica.SignalHealth, HealthReport{Status: runtime.HealthUnhealthy, StartedAt: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)})
	})
	whenWatching(env, n, 1, 1500*time.Millisecond, func() { healthy = queryState(t, env) })
	var unhealthy StateView
	whenWatching(env, n, 1, 1600*time.Millisecond, func() {
		env.SignalWorkflow(replica.SignalHealth, HealthReport{Status: runtime.HealthUnhealthy, Detail: "GET /healthz answered 503 Service Unavailable"})
	})
	whenWatching(env, n, 1, 1700*time.Millisecond, func() { unhealthy = queryState(t, env) })
	unsuperviseWhenWatching(env, n, 1, 2*time.Second)

	env.ExecuteWorkflow(Supervise, in)
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, n.starts, 4, "both unhealthy exits and the OOM kill were restarted")
	require.Equal(t, []string{"Unhealthy", "Unhealthy", "OOMKilled"}, reasons(first))
	require.Equal(t, "OOMKilled", *first.LastExitReason)
	require.Equal(t, "SIGKILL", *first.LastExitSignal)
	require.Equal(t, "starting", *first.Health, "a probe is set: health is shown, starting until the node says")
	require.Equal(t, "healthy", *healthy.Health, "a report about an earlier task is ignored")
	require.Nil(t, healthy.HealthDetail, "no probe has failed")
	require.Equal(t, "GET /healthz answered 503 Service Unavailable", *unhealthy.HealthDetail, "the failed probe's answer")
	require.Nil(t, first.LastRule, "no rule: the panic action decided")
	require.Len(t, first.RestartTimes, 3, "unhealthy exits count in the window")
}
