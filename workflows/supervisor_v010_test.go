package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// TestLegacyBranch runs the behaviour tests on the v0.1.0 branch (a
// WaitForExit activity per watch), which replicas started by v0.1.0 keep
// until they continue as new.
func TestLegacyBranch(t *testing.T) {
	legacyRelease = func(env *testsuite.TestWorkflowEnvironment) { asRelease(env, V010) }
	defer func() { legacyRelease = nil }()
	for name, test := range map[string]func(*testing.T){
		"InstantCrasher":          TestInstantCrasherRestartsThenBacksOff,
		"CrashAfterWindow":        TestCrashAfterWindowIsNotCrashLoop,
		"FailedStart":             TestFailedStartIsRetriedUntilItWorks,
		"ExitZero":                TestExitZeroCompletes,
		"Shutdown":                TestShutdownPolicy,
		"IsolateThenRelease":      TestIsolateThenRelease,
		"OperatorRestart":         TestOperatorRestart,
		"RestartDuringBackoff":    TestRestartDuringBackoff,
		"ContinueAsNewInBackoff":  TestContinueAsNewDuringBackoffKeepsDeadline,
		"UpdateWhileContinuing":   TestUpdateWhileContinuingAsNew,
		"NewSupervisionIsRunning": TestNewSupervisionIsRunning,
	} {
		t.Run(name, test)
	}
}

// v0.1.0 runs (no marker) decide as v0.1.0 did: no rules,
// no exponential backoff, no reasons in events.
func TestRunsBeforeExitReasonsDecideAsBefore(t *testing.T) {
	n := &node{exits: []runtime.Exit{exitWith(42, runtime.ExitExited, "")}}
	env := newEnv(t, n)
	asRelease(env, V010)
	p := policy.Policy{Rules: []policy.Rule{{ExitCodes: []int{42}, Action: policy.ActionShutdown}}}
	var v StateView
	whenWatching(env, n, 1, 0, func() { v = queryState(t, env) })
	unsuperviseWhenWatching(env, n, 1, time.Second)

	env.ExecuteWorkflow(Supervise, input(p))
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, StateRunning, v.State, "exit 42 restarted as in v0.1.0")
	require.Equal(t, []string{""}, reasons(v))
	require.Nil(t, v.LastExitReason)
}

// A v0.1.0 run does not read the node watch's reports, but when it moves to
// a new run (rollover) those reported meanwhile go with it.
func TestV010RolloverCarriesReportedExits(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	asRelease(env, V010)
	later := env.Now().Add(time.Hour)
	whenWatching(env, n, 1, time.Second, func() {
		env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: replicaID, Exit: runtime.Exit{ExitCode: 9, ExitedAt: later}})
		env.RegisterDelayedCallback(func() { sendUpdate(env, replica.UpdateRollover, RolloverRequest{}, &updateResult{}) }, time.Second)
	})
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	next := continuedInput(t, env)
	require.Len(t, next.Carry.PendingExits, 1)
	require.Equal(t, 9, next.Carry.PendingExits[0].ExitCode)
}
