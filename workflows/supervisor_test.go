package workflows

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

var replicaID = replica.ID{Deployment: "shop", Service: "api", Replica: 1}

func input(p policy.Policy) SupervisionInput {
	return SupervisionInput{ID: replicaID, ReplicaConfig: ReplicaConfig{
		Spec:   runtime.ContainerSpec{Image: "docker.io/library/busybox:local", PullPolicy: runtime.PullNever},
		Policy: p,
		Node:   "node-a",
	}}
}

// node is a scripted stand-in for the node's activities. Activities run on
// real goroutines in the test environment, so everything is locked.
type node struct {
	env *testsuite.TestWorkflowEnvironment
	mu  sync.Mutex
	// exits[i] is what the i-th watch returns; past the end, the watch
	// blocks until cancelled (a healthy container).
	exits []runtime.Exit
	// exitsAt[i], if set, is how long (mock time) the i-th watch runs
	// before it returns exits[i]; mock time can skip meanwhile.
	exitsAt []time.Duration
	// startErrs[i] is the error of the i-th start attempt (nil: success).
	startErrs []error
	// watchAt[i], if set, is what the i-th watch returns (before exits applies).
	watchAt map[int]runtime.Exit
	// slowStarts makes every start after the first take this long (wall time).
	slowStarts time.Duration
	// blockStarts makes every start block until cancelled (no worker takes it).
	blockStarts bool
	// blockStops makes every stop block until cancelled (no worker takes it).
	blockStops bool
	// crashedBeforeStop, if set, is what every stop finds: the task had
	// exited by itself (code crashedBeforeStop) before the stop.
	crashedBeforeStop *int
	// stopErr, if set, is what every stop fails with.
	stopErr error
	// alongExit[i], if set, runs just after the i-th exit is reported, in
	// the same workflow task (e.g. a request that meets the restart).
	alongExit map[int]func()
	// network is what every start reports as the container's network.
	network *runtime.NetworkStatus

	starts    []time.Time // mock time of each successful start
	attempts  int
	watches   int
	stops     []activities.StopInput
	isolates  []activities.IsolateInput
	afters    []time.Time
	cancelled int
	blocking  int         // watches that found a healthy container and block
	blockedAt []time.Time // mock time each blocking watch began
	signals   []ServiceShutdownSignal
	specs     []runtime.ContainerSpec // the spec of each successful start
	done      chan struct{}
	// legacy runs the v0.1.0 branch (a WaitForExit activity per watch);
	// otherwise the harness plays the node watch: each start's scripted
	// exit is reported by signal, at a node time after the start's NotBefore.
	legacy   bool
	nodeTime time.Time
	reported []time.Time // exit times the harness reported
	armed    int         // starts whose scripted exit was armed
	// reportOnStart[k] is reported during the k-th start (from 1).
	reportOnStart map[int]activities.ExitReport
	// crashOnStart[k]: the k-th start's task exits with this code at once,
	// reported (naming the task) before the start's result reaches the workflow.
	crashOnStart map[int]int
}

// legacyRelease, when set, makes newEnv run every run as a run of an old
// release (TestLegacyBranch).
var legacyRelease func(*testsuite.TestWorkflowEnvironment)

// nodeNow is the node's clock: mock time, but strictly increasing, so
// every exit has its own time as containerd's do. n.mu must be held.
func (n *node) nodeNow() time.Time {
	t := n.env.Now().UTC()
	if !t.After(n.nodeTime) {
		t = n.nodeTime.Add(time.Microsecond)
	}
	n.nodeTime = t
	return t
}

// reportNextExit plays the node watch for a task just started: it signals
// the task's scripted exit (after exitsAt, in mock time), or leaves a
// healthy container be. n.mu must be held.
func (n *node) reportNextExit() {
	i := n.armed
	n.armed++
	if i >= len(n.exits) {
		return
	}
	var after time.Duration
	if i < len(n.exitsAt) {
		after = n.exitsAt[i]
	}
	e := n.exits[i]
	// The callback runs on the environment's loop; its signal then starts a
	// workflow task (a callback's own changes would wait for the next one).
	n.env.RegisterDelayedCallback(func() {
		n.mu.Lock()
		at := n.nodeNow()
		n.reported = append(n.reported, at)
		n.mu.Unlock()
		n.env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: replicaID, Exit: runtime.Exit{ExitCode: e.ExitCode, ExitedAt: at, Reason: e.Reason,
			Cause: e.Cause, Signal: e.Signal}, OOMKilled: e.Cause == runtime.ExitOOMKilled})
		if f := n.alongExit[i]; f != nil {
			f()
		}
	}, after)
}

// awaiting counts the replica's waits for an exit report: each is a watch,
// and one with no scripted exit coming is a healthy container.
func (n *node) awaiting() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.watches++
	if n.armed == 0 && len(n.exits) > 0 {
		// A run that started nothing (it continued another): the task it
		// carried has exited, and the node watch reports it to this run.
		n.reportNextExit()
	}
	if n.armed == 0 || n.armed-1 >= len(n.exits) {
		n.blocking++ // the current task has no scripted exit
		n.blockedAt = append(n.blockedAt, n.env.Now())
	}
}

// blockingStartedAt is when the last blocking watch began.
func (n *node) blockingStartedAt() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.blockedAt) == 0 {
		return time.Time{}
	}
	return n.blockedAt[len(n.blockedAt)-1]
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func crash(code int) runtime.Exit {
	return runtime.Exit{ExitCode: code, ExitedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func crashes(n, code int) []runtime.Exit {
	out := make([]runtime.Exit, n)
	for i := range out {
		out[i] = crash(code)
	}
	return out
}

func newEnv(t *testing.T, n *node) *testsuite.TestWorkflowEnvironment {
	return newEnvWith(t, n, func(*testsuite.WorkflowTestSuite) {})
}

// newEnvWith is newEnv with the suite set up further by setup.
func newEnvWith(t *testing.T, n *node, setup func(*testsuite.WorkflowTestSuite)) *testsuite.TestWorkflowEnvironment {
	var suite testsuite.WorkflowTestSuite
	// Workflow and SDK logs go to t.Log: shown only when a test fails or with -v.
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(testWriter{t}, nil))))
	setup(&suite)
	env := suite.NewTestWorkflowEnvironment()
	env.SetTestTimeout(30 * time.Second)
	n.env = env
	n.legacy = legacyRelease != nil
	awaitingExit = n.awaiting
	t.Cleanup(func() { awaitingExit = func() {} })
	n.done = make(chan struct{})
	t.Cleanup(func() { close(n.done) })
	// The test environment does not cancel a mock's context; it reports the
	// cancellation here instead.
	env.SetOnActivityCanceledListener(func(info *activity.Info) {
		if info.ActivityType.Name == replica.WaitForExitName {
			n.mu.Lock()
			n.cancelled++
			n.mu.Unlock()
		}
	})
	env.RegisterWorkflowWithOptions(Supervise, workflow.RegisterOptions{Name: replica.SupervisorWorkflowName})
	env.RegisterActivity(activities.New(nil, activities.Options{}))
	env.RegisterActivityWithOptions(func(ctx context.Context, in PlanMoveInput) (MovePlan, error) { return planMove(ctx, in) },
		activity.RegisterOptions{Name: replica.PlanMoveName})
	if legacyRelease != nil {
		legacyRelease(env)
	}

	env.OnActivity(replica.EnsureRunningName, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in activities.EnsureRunningInput) (activities.EnsureRunningResult, error) {
			n.mu.Lock()
			if n.blockStarts {
				n.attempts++
				n.mu.Unlock()
				select {
				case <-ctx.Done():
					return activities.EnsureRunningResult{}, ctx.Err()
				case <-n.done:
					return activities.EnsureRunningResult{}, errors.New("test over")
				}
			}
			defer n.mu.Unlock()
			i := n.attempts
			n.attempts++
			n.afters = append(n.afters, in.After)
			if i < len(n.startErrs) && n.startErrs[i] != nil {
				return activities.EnsureRunningResult{}, n.startErrs[i]
			}
			n.starts = append(n.starts, env.Now())
			n.specs = append(n.specs, in.Spec)
			if len(n.starts) > 1 && n.slowStarts > 0 {
				n.mu.Unlock()
				time.Sleep(n.slowStarts)
				n.mu.Lock()
			}
			if n.legacy {
				return activities.EnsureRunningResult{StartedAt: env.Now(), Network: n.network}, nil
			}
			notBefore := n.nodeNow()
			startedAt := n.nodeNow()
			if r, ok := n.reportOnStart[len(n.starts)]; ok {
				// Reported before the start's result reaches the workflow.
				env.SignalWorkflow(replica.SignalExit, r)
			}
			if code, ok := n.crashOnStart[len(n.starts)]; ok {
				env.SignalWorkflow(replica.SignalExit, activities.ExitReport{ID: replicaID,
					Exit: runtime.Exit{ExitCode: code, ExitedAt: n.nodeNow(), StartedAt: startedAt, Cause: runtime.ExitExited}})
			}
			n.reportNextExit()
			return activities.EnsureRunningResult{StartedAt: startedAt, NotBefore: notBefore, Network: n.network}, nil
		})
	env.OnActivity(replica.WaitForExitName, mock.Anything, mock.Anything).AfterFn(func() time.Duration {
		n.mu.Lock()
		defer n.mu.Unlock()
		if i := n.watches; i < len(n.exitsAt) && i < len(n.exits) {
			return n.exitsAt[i]
		}
		return 0
	}).Return(
		func(ctx context.Context, _ activities.WaitForExitInput) (runtime.Exit, error) {
			n.mu.Lock()
			i := n.watches
			n.watches++
			at, ok := n.watchAt[i]
			n.mu.Unlock()
			if ok {
				return at, nil
			}
			if i < len(n.exits) {
				return n.exits[i], nil
			}
			n.mu.Lock()
			n.blocking++
			n.blockedAt = append(n.blockedAt, n.env.Now())
			n.mu.Unlock()
			select {
			case <-ctx.Done():
				return runtime.Exit{}, ctx.Err()
			case <-n.done:
				return runtime.Exit{}, errors.New("test over")
			}
		})
	env.OnActivity(replica.StopName, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in activities.StopInput) (runtime.Exit, error) {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.stops = append(n.stops, in)
			if n.blockStops {
				n.mu.Unlock()
				defer n.mu.Lock()
				select {
				case <-ctx.Done():
					return runtime.Exit{}, ctx.Err()
				case <-n.done:
					return runtime.Exit{}, errors.New("test over")
				}
			}
			if n.stopErr != nil {
				return runtime.Exit{}, n.stopErr
			}
			if c := n.crashedBeforeStop; c != nil {
				return runtime.Exit{ExitCode: *c, ExitedAt: n.nodeNow(), Cause: runtime.ExitExited, ExitedBeforeStop: true}, nil
			}
			return runtime.Exit{ExitCode: 143, ExitedAt: env.Now()}, nil
		})
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, replica.SignalServiceShutdown, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.signals = append(n.signals, arg.(ServiceShutdownSignal))
			return nil
		})
	env.OnActivity(replica.IsolateName, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.IsolateInput) error {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.isolates = append(n.isolates, in)
			return nil
		})
	return env
}

func queryState(t *testing.T, env *testsuite.TestWorkflowEnvironment) StateView {
	t.Helper()
	v, err := env.QueryWorkflow(replica.QueryState)
	require.NoError(t, err)
	var view StateView
	require.NoError(t, v.Get(&view))
	return view
}

// stateNow queries the state; a failed query leaves it empty (and the
// test's assertions on it fail).
func stateNow(env *testsuite.TestWorkflowEnvironment) StateView {
	var view StateView
	if v, err := env.QueryWorkflow(replica.QueryState); err == nil {
		_ = v.Get(&view)
	}
	return view
}

// update sends an update from inside the test environment's event loop and
// records whether it was rejected and how it completed.
type updateResult struct {
	rejected error
	err      error
	done     bool
	value    any
	// before is the state just before the update was sent.
	before StateView
}

func sendUpdate(env *testsuite.TestWorkflowEnvironment, name string, arg any, res *updateResult) {
	env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
		OnReject:   func(err error) { res.rejected = err; res.done = true },
		OnAccept:   func() {},
		OnComplete: func(v any, err error) { res.value, res.err = v, err; res.done = true },
	}, arg)
}

// whenWatching runs fn on the environment's event loop once the k-th watch of a
// healthy container has begun. Mock time cannot skip while an activity runs,
// so this polls every few milliseconds instead of waiting on a long delayed
// callback. Polling starts after the given mock delay: a pending poll lets mock
// time pass while a slow activity runs, so tests that assert exact times start
// polling only after the moments they assert.
func whenWatching(env *testsuite.TestWorkflowEnvironment, n *node, k int, after time.Duration, fn func()) {
	var poll func()
	poll = func() {
		n.mu.Lock()
		ready := n.blocking >= k
		n.mu.Unlock()
		if ready {
			fn()
			return
		}
		env.RegisterDelayedCallback(poll, 5*time.Millisecond)
	}
	env.RegisterDelayedCallback(poll, after)
}

func unsuperviseWhenWatching(env *testsuite.TestWorkflowEnvironment, n *node, k int, after time.Duration) *updateResult {
	res := &updateResult{}
	whenWatching(env, n, k, after, func() {
		res.before = stateNow(env)
		sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, res)
	})
	return res
}

func requireTime(t *testing.T, want, got time.Time, what string) {
	t.Helper()
	require.Truef(t, want.Equal(got), "%s: want %v, got %v", what, want, got)
}

func unsuperviseAt(env *testsuite.TestWorkflowEnvironment, d time.Duration) *updateResult {
	res := &updateResult{}
	env.RegisterDelayedCallback(func() {
		res.before = stateNow(env)
		sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, res)
	}, d)
	return res
}

func eventTypes(v StateView) []EventType {
	out := make([]EventType, len(v.Events))
	for i, e := range v.Events {
		out[i] = e.Type
	}
	return out
}

// An instant crasher under the default policy: 5 immediate restarts, then
// exactly one 30 s backoff per crash-loop episode and one start after it. Over
// ten simulated minutes the starts are exactly what the policy allows.
// Also the original's bug 1: the container is never watched or started during a backoff.
func TestInstantCrasherRestartsThenBacksOff(t *testing.T) {
	n := &node{exits: crashes(1000, 1)}
	env := newEnv(t, n)
	start := env.Now()
	var mid StateView
	env.RegisterDelayedCallback(func() { mid = queryState(t, env) }, 45*time.Second)
	end := unsuperviseAt(env, 10*time.Minute-time.Second)

	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())

	// Initial start + 5 restarts at t=0, then one start every 30 s (t=30..570).
	require.Len(t, n.starts, 6+19)
	for i := 0; i < 6; i++ {
		requireTime(t, start, n.starts[i], "immediate start")
	}
	for k := 1; k <= 19; k++ {
		requireTime(t, start.Add(time.Duration(k)*30*time.Second), n.starts[5+k], "delayed start")
	}
	// One watch per start: nothing watched the container while it was backing off.
	require.Equal(t, len(n.starts), n.watches)

	v := queryState(t, env)
	require.Equal(t, StateCrashLoopBackOff, end.before.State)
	if !n.legacy { // v0.1.0 has no such state, event or signal
		require.Equal(t, StateUnsupervised, v.State, "after unsupervise")
	}
	require.Equal(t, 24, v.TotalRestarts, "restarts actually made")
	require.Equal(t, 1, *v.LastExitCode)
	require.NotNil(t, end.before.NextRestartAt)

	require.Equal(t, StateCrashLoopBackOff, mid.State, "state at 45 s")
	require.Equal(t, 6, mid.TotalRestarts, "5 immediate + 1 delayed by 45 s")
	require.Equal(t, formatTime(start.Add(60*time.Second)), *mid.NextRestartAt)
	require.Equal(t, []EventType{
		EventContainerRestarted, EventContainerRestarted, EventContainerRestarted, EventContainerRestarted,
		EventContainerRestarted, EventCrashLoopBackOff, EventContainerRestarted, EventCrashLoopBackOff,
	}, eventTypes(mid))
	// The delayed start is a restart too, with its time and count.
	delayed := mid.Events[6]
	requireTime(t, start.Add(30*time.Second), delayed.Time, "delayed restart event")
	require.Equal(t, 6, delayed.RestartCount)
	require.Equal(t, 1, *delayed.ExitCode)
}

// Five crashes, then more than restart_window passes, then a sixth crash: not a
// crash loop. Mock time cannot pass inside an activity in the test
// environment, so the time passes in the durable retries of a failing start.
func TestCrashAfterWindowIsNotCrashLoop(t *testing.T) {
	imageGone := temporal.NewNonRetryableApplicationError("image missing", replica.ErrTypeImageNotFound, nil)
	// Starts: initial, restarts 1-4 succeed; restart 5 fails 6 times
	// (5+10+20+40+80+160 = 315 s of retries), then succeeds.
	errs := make([]error, 5+6)
	for i := 5; i < 11; i++ {
		errs[i] = imageGone
	}
	n := &node{exits: crashes(6, 1), startErrs: errs}
	env := newEnv(t, n)
	start := env.Now()
	var retrying StateView
	env.RegisterDelayedCallback(func() { retrying = queryState(t, env) }, 100*time.Second)
	end := unsuperviseWhenWatching(env, n, 1, 314*time.Second)

	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())

	require.Equal(t, StateRestarting, retrying.State, "a failing start stays visible")
	v := queryState(t, env)
	require.Equal(t, StateRunning, end.before.State, "the sixth crash was restarted, not backed off")
	if !n.legacy { // v0.1.0 has no such state, event or signal
		require.Equal(t, StateUnsupervised, v.State, "after unsupervise")
	}
	require.Equal(t, 6, v.TotalRestarts)
	require.Len(t, v.RestartTimes, 1, "crashes older than the window are forgotten")
	last := n.starts[len(n.starts)-1]
	// 4 s more: the activity's own retry delays (1 s, 2 s... ) inside each
	// failing attempt are mock time too.
	require.True(t, !last.Before(start.Add(315*time.Second)), "sixth crash at %v, want >= 315 s after start", last.Sub(start))
	for _, e := range v.Events {
		require.NotEqual(t, EventCrashLoopBackOff, e.Type)
	}
}

// The original's bug 2: a failed start never drops supervision. The start is
// retried with growing durable delays, and supervision goes on once it works.
func TestFailedStartIsRetriedUntilItWorks(t *testing.T) {
	boom := errors.New("containerd unavailable")
	n := &node{startErrs: []error{boom, boom, boom, boom, boom, boom}, exits: crashes(1, 2)}
	env := newEnv(t, n)
	start := env.Now()
	end := unsuperviseWhenWatching(env, n, 1, 21*time.Second+100*time.Millisecond)

	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())

	// 6 failed attempts (each after the activity's own 3 tries), then the
	// start works; the container crashes once and is restarted and watched again.
	require.Len(t, n.starts, 2)
	// Each failing activity is tried 3 times (1 s, 2 s apart), then the
	// workflow waits 5 s and 10 s on durable timers: 3 + 5 + 3 + 10 + 0 = 21 s.
	requireTime(t, start.Add(21*time.Second), n.starts[0], "first successful start")
	v := queryState(t, env)
	require.Equal(t, StateRunning, end.before.State)
	if !n.legacy { // v0.1.0 has no such state, event or signal
		require.Equal(t, StateUnsupervised, v.State, "after unsupervise")
	}
	require.Equal(t, 1, v.TotalRestarts)
	require.Equal(t, 2, *v.LastExitCode)
	require.Equal(t, 2, n.watches)
}

func TestExitZeroCompletes(t *testing.T) {
	n := &node{exits: crashes(1, 0)}
	env := newEnv(t, n)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())

	v := queryState(t, env)
	require.Equal(t, StateCompleted, v.State)
	require.Equal(t, 0, v.TotalRestarts)
	require.Equal(t, 0, *v.LastExitCode)
	require.Equal(t, []EventType{EventContainerCompleted}, eventTypes(v))
	require.Len(t, n.starts, 1)
}

// A Failed container (e.g. deleted behind Vigil's back) counts as exit -1.
func TestFailedContainerCountsAsCrash(t *testing.T) {
	n := &node{exits: []runtime.Exit{{ExitCode: runtime.FailedExitCode, Reason: "container missing"}}}
	env := newEnv(t, n)
	end := unsuperviseWhenWatching(env, n, 1, 0)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())

	v := queryState(t, env)
	require.Equal(t, StateRunning, end.before.State)
	require.Equal(t, StateUnsupervised, v.State, "after unsupervise")
	require.Equal(t, -1, *v.LastExitCode)
	require.Equal(t, 1, v.TotalRestarts)
	require.Equal(t, -1, *v.Events[0].ExitCode)
}

// The original's bug 4: total_restarts counts restarts actually made, so a
// shutdown counts none.
func TestShutdownPolicy(t *testing.T) {
	n := &node{exits: crashes(1, 2)}
	env := newEnv(t, n)
	var parked StateView
	env.RegisterDelayedCallback(func() { parked = queryState(t, env) }, time.Hour)
	unsuperviseAt(env, 2*time.Hour)
	env.ExecuteWorkflow(Supervise, input(policy.Policy{Action: policy.ActionShutdown}))
	require.NoError(t, env.GetWorkflowError())

	require.Equal(t, StateShutdown, parked.State, "still shut down an hour later")
	require.Equal(t, 0, parked.TotalRestarts)
	require.Equal(t, "shutdown", parked.PanicAction)
	require.Equal(t, []EventType{EventServiceShutdown}, eventTypes(parked))
	require.Equal(t, 2, *parked.Events[0].ExitCode)
	require.Len(t, n.starts, 1)
	require.Equal(t, 1, n.watches)
	// The deployment is told, so it shuts the rest of the service down.
	if !n.legacy { // v0.1.0 has no such state, event or signal
		require.Equal(t, []ServiceShutdownSignal{{Service: "api", Replica: 1, ExitCode: 2}}, n.signals)
	}
}

// Isolate: the hook runs with the exit code, the replica stays Isolated and is
// not restarted; release supervises it again.
func TestIsolateThenRelease(t *testing.T) {
	n := &node{exits: crashes(1, 3)}
	env := newEnv(t, n)
	p := policy.Policy{Action: policy.ActionIsolate}
	in := input(p)
	in.IsolateWebhook = "http://127.0.0.1:9/hook"
	var isolated, released StateView
	rel := &updateResult{}
	env.RegisterDelayedCallback(func() {
		isolated = queryState(t, env)
		sendUpdate(env, replica.UpdateRelease, ReleaseRequest{}, rel)
	}, time.Hour)
	whenWatching(env, n, 1, time.Hour, func() {
		released = queryState(t, env)
		sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, &updateResult{})
	})
	env.ExecuteWorkflow(Supervise, in)
	require.NoError(t, env.GetWorkflowError())

	require.Equal(t, StateIsolated, isolated.State)
	require.Equal(t, "isolate", isolated.PanicAction)
	require.Equal(t, 0, isolated.TotalRestarts)
	require.Equal(t, []EventType{EventContainerIsolated}, eventTypes(isolated))
	require.Equal(t, []activities.IsolateInput{{ID: replicaID, ExitCode: 3, Webhook: in.IsolateWebhook}}, n.isolates)

	require.True(t, rel.done)
	require.NoError(t, rel.rejected)
	require.NoError(t, rel.err)
	require.Equal(t, StateRunning, released.State)
	require.Equal(t, 0, released.TotalRestarts, "a release is not a crash restart")
	if !n.legacy { // v0.1.0 has no such state, event or signal
		require.Equal(t, []EventType{EventContainerIsolated, EventReleased}, eventTypes(released), "the release is an event")
	}
	require.Len(t, n.starts, 2)
}

// An operator restart stops and starts the container without counting a crash.
func TestOperatorRestart(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	res := &updateResult{}
	whenWatching(env, n, 1, 0, func() { sendUpdate(env, replica.UpdateRestart, RestartRequest{}, res) })
	end := unsuperviseWhenWatching(env, n, 2, 0)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())

	require.NoError(t, res.rejected)
	require.NoError(t, res.err)
	require.Len(t, n.stops, 1)
	require.Equal(t, runtime.DefaultStopGrace, n.stops[0].Grace)
	require.Len(t, n.starts, 2)
	require.Equal(t, n.stops[0].ID, replicaID)
	v := queryState(t, env)
	require.Equal(t, StateRunning, end.before.State)
	if !n.legacy { // v0.1.0 has no such state, event or signal
		require.Equal(t, StateUnsupervised, v.State, "after unsupervise")
	}
	require.Equal(t, 0, v.TotalRestarts)
	require.Empty(t, v.RestartTimes)
	// The operator's requests are events; no crash is.
	if !n.legacy { // v0.1.0 records no operator events
		require.Equal(t, []EventType{EventOperatorRestart, EventUnsupervised}, eventTypes(v))
		require.False(t, v.Events[0].EndedBackoff)
		require.Equal(t, "container left as it was", v.Events[1].Note)
	}
	if n.legacy {
		require.Equal(t, 1, n.cancelled, "the restart cancelled the first watch (the second ended with the workflow)")
	} else {
		require.Zero(t, n.cancelled, "no watch activity: the node watch reports exits")
	}
}

// Updates that make no sense in the current state are rejected by the
// validator, before they reach history, and change nothing.
func TestRejectedUpdates(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	release := &updateResult{}
	whenWatching(env, n, 1, 0, func() {
		sendUpdate(env, replica.UpdateRelease, ReleaseRequest{}, release)
		sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, &updateResult{})
	})
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())

	require.ErrorContains(t, release.rejected, "release: replica is Running")
	require.Len(t, n.starts, 1)
	require.Empty(t, n.stops)
}

func TestRestartRejectedWhenShutdown(t *testing.T) {
	n := &node{exits: crashes(1, 1)}
	env := newEnv(t, n)
	res := &updateResult{}
	env.RegisterDelayedCallback(func() { sendUpdate(env, replica.UpdateRestart, RestartRequest{}, res) }, time.Minute)
	unsuperviseAt(env, time.Hour)
	env.ExecuteWorkflow(Supervise, input(policy.Policy{Action: policy.ActionShutdown}))
	require.NoError(t, env.GetWorkflowError())
	require.ErrorContains(t, res.rejected, "use release")
}

// Unsupervise with stop stops the container and ends the workflow.
func TestUnsuperviseStops(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	res := &updateResult{}
	whenWatching(env, n, 1, 0, func() { sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{Stop: true}, res) })
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	require.NoError(t, res.err)
	require.Len(t, n.stops, 1)
}

// An operator restart during a backoff ends the backoff early: the one
// delayed start of the episode. Since v0.3.0 it is not counted as a
// restart (an operator's, not a crash's, as the README says); before, it
// was.
func TestRestartDuringBackoff(t *testing.T) {
	t.Run("current", func(t *testing.T) { testRestartDuringBackoff(t, CurrentRelease) })
	t.Run("v0.2.0", func(t *testing.T) { testRestartDuringBackoff(t, V020) })
}

func testRestartDuringBackoff(t *testing.T, rel Release) {
	n := &node{exits: crashes(6, 1)}
	env := newEnv(t, n)
	if rel == V020 && !n.legacy {
		asRelease(env, V020)
	}
	start := env.Now()
	res := &updateResult{}
	env.RegisterDelayedCallback(func() { sendUpdate(env, replica.UpdateRestart, RestartRequest{}, res) }, 10*time.Second)
	end := unsuperviseWhenWatching(env, n, 1, 10*time.Second+100*time.Millisecond)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())
	require.NoError(t, res.err)
	require.Len(t, n.starts, 7)
	requireTime(t, start.Add(10*time.Second), n.starts[6], "operator-ended backoff")
	require.Empty(t, n.stops)
	v := queryState(t, env)
	require.Equal(t, StateRunning, end.before.State)
	if !n.legacy { // v0.1.0 has no such state, event or signal
		require.Equal(t, StateUnsupervised, v.State, "after unsupervise")
	}
	counted := 6 // 5 after crashes, and the operator's
	if rel >= V030 && !n.legacy {
		counted = 5
		require.NotEqual(t, EventContainerRestarted, v.Events[len(v.Events)-2].Type, "the operator's restart is no crash restart")
	}
	require.Equal(t, counted, v.TotalRestarts)
	require.Nil(t, v.NextRestartAt)
	// The operator's restart is an event that says it ended the backoff early.
	var restarts []Event
	for _, e := range v.Events {
		if e.Type == EventOperatorRestart {
			restarts = append(restarts, e)
		}
	}
	if !n.legacy { // v0.1.0 records no operator events
		require.Len(t, restarts, 1)
		require.True(t, restarts[0].EndedBackoff)
	}
}

// Continue-as-new in the middle of a backoff carries the deadline: the new run
// starts the container at the original deadline, not 30 s after it began.
func TestContinueAsNewDuringBackoffKeepsDeadline(t *testing.T) {
	n := &node{exits: crashes(6, 1)}
	env := newEnv(t, n)
	start := env.Now()
	in := input(policy.Default())
	in.ContinueAsNewAfter = 6
	env.ExecuteWorkflow(Supervise, in)
	next := continuedInput(t, env)
	require.Equal(t, StateCrashLoopBackOff, next.Carry.State)
	requireTime(t, start.Add(30*time.Second), next.Carry.NextRestartAt, "carried deadline")
	require.Equal(t, 5, next.Carry.TotalRestarts)
	require.Len(t, next.Carry.History.RestartTimes, 6)
	require.Equal(t, 1, next.Carry.Runs)
	require.Len(t, n.starts, 6, "no start during the backoff before continuing")

	// The next run begins 12 s later (say a worker was down): it waits only
	// the remaining 18 s, does not watch meanwhile, and starts once.
	n2 := &node{}
	env2 := newEnv(t, n2)
	env2.SetStartTime(start.Add(12 * time.Second))
	var during StateView
	env2.RegisterDelayedCallback(func() { during = queryState(t, env2) }, 5*time.Second)
	end := unsuperviseWhenWatching(env2, n2, 1, 18*time.Second+100*time.Millisecond)
	env2.ExecuteWorkflow(Supervise, next)
	require.NoError(t, env2.GetWorkflowError())

	require.Equal(t, StateCrashLoopBackOff, during.State)
	require.Equal(t, 5, during.TotalRestarts)
	require.Equal(t, formatTime(start.Add(30*time.Second)), *during.NextRestartAt)
	require.Equal(t, formatTime(start), during.SupervisedSince, "supervised_since survives continue-as-new")
	require.Len(t, n2.starts, 1)
	requireTime(t, start.Add(30*time.Second), n2.starts[0], "delayed start in the continued run")
	v := queryState(t, env2)
	require.Equal(t, 6, v.TotalRestarts)
	require.Equal(t, StateRunning, end.before.State)
	if !n.legacy { // v0.1.0 has no such state, event or signal
		require.Equal(t, StateUnsupervised, v.State, "after unsupervise")
	}
	if !n.legacy { // v0.1.0 records no operator events
		require.Equal(t, EventContainerRestarted, v.Events[len(v.Events)-2].Type)
		require.Equal(t, EventUnsupervised, v.Events[len(v.Events)-1].Type)
	}
}

// A request that arrives while the run is about to continue as new is served
// first, not left waiting (which would deadlock the run).
func TestUpdateWhileContinuingAsNew(t *testing.T) {
	n := &node{exits: crashes(1, 1), slowStarts: 300 * time.Millisecond}
	env := newEnv(t, n)
	in := input(policy.Default())
	in.ContinueAsNewAfter = 1
	res := &updateResult{}
	// Polls every few ms of wall time while the slow restart runs.
	env.RegisterDelayedCallback(func() {
		sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, res)
	}, 100*time.Millisecond)
	env.ExecuteWorkflow(Supervise, in)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError(), "unsupervise was served before continuing as new")
	require.True(t, res.done)
	require.NoError(t, res.rejected)
	require.NoError(t, res.err)
	require.Len(t, n.starts, 2)
}

// The original's bug 3: events never block supervision. Hundreds of events
// with nobody reading: supervision goes on, state keeps a bounded tail, and the
// run continues as new at its bound.
func TestManyEventsNeverBlock(t *testing.T) {
	n := &node{exits: crashes(DefaultContinueAsNewAfter, 1)}
	env := newEnv(t, n)
	p := policy.Default()
	p.MaxRestarts = 10000
	env.ExecuteWorkflow(Supervise, input(p))
	require.True(t, env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(env.GetWorkflowError(), &can), "want continue-as-new, got %v", env.GetWorkflowError())
	v := queryState(t, env)
	require.Equal(t, DefaultContinueAsNewAfter, v.TotalRestarts)
	require.Len(t, v.Events, maxEvents)
	require.Equal(t, DefaultContinueAsNewAfter, v.Events[maxEvents-1].RestartCount)
}

// Ported from the original: test_supervise_container and test_get_container_info.
func TestNewSupervisionIsRunning(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	start := env.Now()
	var v StateView
	whenWatching(env, n, 1, 0, func() {
		v = queryState(t, env)
		sendUpdate(env, replica.UpdateUnsupervise, UnsuperviseRequest{}, &updateResult{})
	})
	env.ExecuteWorkflow(Supervise, input(policy.Policy{Action: policy.ActionIsolate}))
	require.NoError(t, env.GetWorkflowError())

	require.Equal(t, "shop/api-rep-1", v.ID)
	require.Equal(t, "shop", v.Deployment)
	require.Equal(t, "api", v.Service)
	require.Equal(t, 1, v.Replica)
	require.Equal(t, StateRunning, v.State)
	require.Equal(t, "isolate", v.PanicAction)
	require.Equal(t, 0, v.TotalRestarts)
	require.Nil(t, v.LastExitCode)
	require.Nil(t, v.NextRestartAt)
	require.NotEmpty(t, v.SupervisedSince)
	// Compared with the run's own start time: the test clock may move between
	// env.Now() above and the workflow's first task on a loaded machine.
	since, err := time.Parse(time.RFC3339Nano, v.SupervisedSince)
	require.NoError(t, err)
	requireTime(t, since, n.afters[0], "the first start restarts only tasks that exited before supervision began")
	require.False(t, since.Before(start), "supervised since %v, before the test started at %v", since, start)
}

// Ported from the original: test_supervised_state_should_monitor, with bug 1
// fixed: a replica in CrashLoopBackOff is not watched.
func TestOnlyRunningIsWatched(t *testing.T) {
	for _, s := range AllStates {
		require.Equal(t, s == StateRunning, s.Watched(), "%s", s)
	}
}

func TestWorkflowIDAndRef(t *testing.T) {
	require.Equal(t, "vigil/shop/api-rep-1", replicaID.WorkflowID())
	require.Equal(t, "api-rep-1", replicaID.String())
	for _, ref := range []string{"shop/api-rep-1", "vigil/shop/api-rep-1"} {
		id, err := replica.ParseRef(ref)
		require.NoError(t, err)
		require.Equal(t, replicaID, id)
	}
	for _, bad := range []string{"", "shop", "shop/api", "shop/api-rep-0", "shop/api-rep-x", "a/b/api-rep-1"} {
		_, err := replica.ParseRef(bad)
		require.Error(t, err, bad)
	}
}

// asRelease makes the run replay as a run recorded by release r before the
// release marker existed (V010 or V020).
func asRelease(env *testsuite.TestWorkflowEnvironment, r Release) {
	env.OnGetVersion(ReleaseMarker, workflow.DefaultVersion, workflow.Version(CurrentRelease)).Return(workflow.DefaultVersion)
	v := workflow.Version(1)
	if r == V010 {
		v = workflow.DefaultVersion
	}
	for _, id := range v020Changes {
		env.OnGetVersion(id, workflow.DefaultVersion, 1).Return(v)
	}
}

// A run whose change markers are a mix no release records is refused: its
// workflow task panics, nothing is done on a guess.
func TestMixedChangeMarkersAreRefused(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	env.OnGetVersion(ReleaseMarker, workflow.DefaultVersion, workflow.Version(CurrentRelease)).Return(workflow.DefaultVersion)
	for _, id := range v020Changes {
		v := workflow.DefaultVersion
		if id == "exit-reasons" {
			v = 1
		}
		env.OnGetVersion(id, workflow.DefaultVersion, 1).Return(v)
	}
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	var panicked *temporal.PanicError
	require.ErrorAs(t, env.GetWorkflowError(), &panicked)
	require.Contains(t, panicked.Error(), "refusing to guess")
	require.Empty(t, n.starts, "nothing was started")
}

// markers records each GetVersion of a run and what it read.
type markers struct {
	interceptor.WorkerInterceptorBase
	interceptor.WorkflowInboundInterceptorBase
	interceptor.WorkflowOutboundInterceptorBase
	read map[string]workflow.Version
	ids  []string
}

func (m *markers) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	m.WorkflowInboundInterceptorBase.Next = next
	return m
}

func (m *markers) Init(out interceptor.WorkflowOutboundInterceptor) error {
	m.WorkflowOutboundInterceptorBase.Next = out
	return m.WorkflowInboundInterceptorBase.Next.Init(m)
}

func (m *markers) GetVersion(ctx workflow.Context, id string, lo, hi workflow.Version) workflow.Version {
	v := m.WorkflowOutboundInterceptorBase.Next.GetVersion(ctx, id, lo, hi)
	m.ids = append(m.ids, id)
	m.read[id] = v
	return v
}

// A new run records one version marker, the release, and reads it as the
// current release.
func TestNewRunRecordsOneReleaseMarker(t *testing.T) {
	n := &node{}
	env := newEnv(t, n)
	m := &markers{read: map[string]workflow.Version{}}
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{m}})
	unsuperviseWhenWatching(env, n, 1, 0)
	env.ExecuteWorkflow(Supervise, input(policy.Default()))
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []string{ReleaseMarker}, m.ids)
	require.Equal(t, workflow.Version(CurrentRelease), m.read[ReleaseMarker])
}
