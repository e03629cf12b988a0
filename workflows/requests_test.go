package workflows

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
)

// A replica whose first start keeps failing is Pending, never Running.
func TestPendingUntilFirstStart(t *testing.T) {
	boom := errors.New("containerd unavailable")
	n := &node{startErrs: []error{boom, boom, boom}}
	env := newEnv(t, n)
	var failing StateView
	env.RegisterDelayedCallback(func() { failing = queryState(t, env) }, 4*time.Second)
	end := unsuperviseWhenWatching(env, n, 1, 10*time.Second)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())

	require.Equal(t, StatePending, failing.State, "before the first start worked")
	require.Equal(t, StateRunning, end.before.State)
	require.Equal(t, StateUnsupervised, queryState(t, env).State)
}

// unsupervise ends supervision at once even while a start waits for a
// worker that never comes; a repeated request joins the one in flight.
func TestUnsuperviseDuringStartEndsPromptly(t *testing.T) {
	n := &node{blockStarts: true}
	env := newEnv(t, n)
	restart, again, sameID := &updateResult{}, &updateResult{}, &updateResult{}
	env.RegisterDelayedCallback(func() {
		sendUpdate(env, replica.UpdateRestart, RestartRequest{RequestID: "r-1"}, restart)
	}, 10*time.Millisecond)
	env.RegisterDelayedCallback(func() {
		// A retry (a new ID) and a resend (the same ID) of the same request.
		sendUpdate(env, replica.UpdateRestart, RestartRequest{RequestID: "r-2"}, again)
		sendUpdate(env, replica.UpdateRestart, RestartRequest{RequestID: "r-1"}, sameID)
	}, 50*time.Millisecond)
	// Mock time moves at wall-clock pace while the start "runs".
	end := unsuperviseAt(env, 100*time.Millisecond)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())

	require.Equal(t, StatePending, end.before.State)
	require.NoError(t, end.rejected)
	require.NoError(t, end.err)
	for _, r := range []*updateResult{restart, again, sameID} {
		require.NoError(t, r.rejected, "a repeated request joins the one in flight")
		require.ErrorContains(t, r.err, "supervision ended (unsupervised)")
	}
	v := queryState(t, env)
	require.Equal(t, StateUnsupervised, v.State)
	require.Equal(t, []EventType{EventOperatorRestart, EventUnsupervised}, eventTypes(v))
	require.Equal(t, "r-1", v.Events[0].RequestID)
	require.Equal(t, 1, n.attempts, "one start, cancelled")
}

// restart of a replica whose start keeps failing tries the start now.
func TestRestartRetriesAFailingStartNow(t *testing.T) {
	boom := errors.New("containerd unavailable")
	// The first start works; after the crash every start fails for a while.
	errs := []error{nil}
	for range 12 {
		errs = append(errs, boom)
	}
	n := &node{exits: crashes(1, 3), startErrs: errs}
	env := newEnv(t, n)
	start := env.Now()
	res := &updateResult{}
	var before StateView
	// Attempts: 3 tries (3 s), wait 5 s, 3 tries, wait 10 s, 3 tries (to
	// 24 s), wait 20 s: at 30 s the restart cuts that wait short.
	env.RegisterDelayedCallback(func() {
		before = queryState(t, env)
		sendUpdate(env, replica.UpdateRestart, RestartRequest{RequestID: "now"}, res)
	}, 30*time.Second)
	end := unsuperviseWhenWatching(env, n, 1, 54*time.Second)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())

	require.Equal(t, StateRestarting, before.State)
	require.NoError(t, res.rejected)
	require.ErrorContains(t, res.err, "the start failed again: containerd unavailable")
	require.Len(t, n.starts, 2)
	// The attempt made at once (3 quick tries) failed; the next one, 20 s
	// later, worked.
	// (Mock time runs on while a test activity runs: allow under a second.)
	want := start.Add(30*time.Second + 3*time.Second + 20*time.Second)
	require.WithinRange(t, n.starts[1], want, want.Add(time.Second), "start after the operator's retry")
	require.Equal(t, 14, n.attempts)
	require.Equal(t, StateRunning, end.before.State)
	v := queryState(t, env)
	require.Contains(t, eventTypes(v), EventOperatorRestart)
}

// A run that continues as new is marked in VigilState first, so that
// counting VigilState='Running' counts each replica once, not each run.
func TestContinuedRunIsNotCountedAsRunning(t *testing.T) {
	n := &node{exits: crashes(1, 1), exitsAt: []time.Duration{48 * time.Hour}}
	env := newEnv(t, n)
	var states []string
	env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		if v, ok := args.Get(0).(temporal.SearchAttributes).GetKeyword(SearchAttrState); ok {
			states = append(states, v)
		}
	}).Return(nil)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	continuedInput(t, env)
	require.Equal(t, []string{"Pending", "Running", replica.SearchStateContinuedAsNew}, states)
}
