package workflows

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// cluster is a scripted stand-in for the replica workflows the deployment
// drives through its control activities.
type cluster struct {
	mu       sync.Mutex
	replicas map[string]ReplicaRecord
	log      []string // "create shop/api-rep-1", "replace shop/api-rep-2 gen 2", ...
	// down counts replicas being replaced at this moment; maxDown the most at once.
	down, maxDown int
	// notReady makes the replacement of these replicas report a crash.
	notReady map[string]bool
	deleted  []string
	// hold, if set, keeps the next replacement in flight until it is closed.
	hold chan struct{}
	// noWorker: no worker on the node takes a deletion (schedule-to-start).
	noWorker bool
	digests  map[string]string
	// observed counts the observe pages read; maxObserved is the most
	// replicas one page asked for.
	observed, maxObserved int
	// creating counts the creates in flight; maxCreating the most at once.
	creating, maxCreating int
	// batches are the sizes of the StartReplicas batches, in order.
	batches []int
	// updates are the replacements' answers by replica and update ID.
	updates map[string]ReconfigureReplicaResult
	// problems are what the preflight of these replicas finds.
	problems map[string]runtime.Problem
	// noPreflightWorker: no worker on the node takes a preflight;
	// oldPreflightWorker: the worker there has no Preflight activity.
	noPreflightWorker, oldPreflightWorker bool
	preflights                            []string // the replicas preflighted, in order
}

// digest is ConfigDigest, remembered: the replica workflows the cluster
// stands in for keep their config, and 10,000 of them share one.
func (c *cluster) digest(cfg ReplicaConfig) string {
	if c.digests == nil {
		c.digests = map[string]string{}
	}
	key := fmt.Sprint(cfg)
	if d, ok := c.digests[key]; ok {
		return d
	}
	d := ConfigDigest(cfg)
	c.digests[key] = d
	return d
}

func (c *cluster) record(format string, args ...any) {
	c.log = append(c.log, fmt.Sprintf(format, args...))
}

func newDeploymentEnv(t *testing.T, c *cluster) *testsuite.TestWorkflowEnvironment {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(testWriter{t}, nil))))
	env := suite.NewTestWorkflowEnvironment()
	env.SetTestTimeout(30 * time.Second)
	if c.replicas == nil {
		c.replicas = map[string]ReplicaRecord{}
	}
	env.RegisterWorkflowWithOptions(Deployment, workflowName(replica.DeploymentWorkflowName))
	env.RegisterActivity(activities.New(nil, activities.Options{}))
	env.RegisterActivityWithOptions(func(context.Context, ObserveInput) ([]ReplicaRecord, error) { return nil, nil }, activityName(replica.ObserveReplicasName))
	env.RegisterActivityWithOptions(func(context.Context, ObservePageInput) (ObservePage, error) { return ObservePage{}, nil }, activityName(replica.ObserveReplicaPageName))
	env.RegisterActivityWithOptions(func(context.Context, SupervisionInput) error { return nil }, activityName(replica.StartReplicaName))
	env.RegisterActivityWithOptions(func(context.Context, StartReplicasInput) error { return nil }, activityName(replica.StartReplicasName))
	env.RegisterActivityWithOptions(func(context.Context, ReconfigureReplicaInput) (ReconfigureReplicaResult, error) {
		return ReconfigureReplicaResult{}, nil
	}, activityName(replica.ReconfigureReplicaName))
	env.RegisterActivityWithOptions(func(context.Context, ReplicaRequest) error { return nil }, activityName(replica.UnsuperviseReplicaName))
	env.RegisterActivityWithOptions(func(context.Context, ReplicaRequest) error { return nil }, activityName(replica.ShutdownReplicaName))
	env.RegisterActivityWithOptions(func(context.Context, DeleteReplicaInput) (DeletedReplica, error) { return DeletedReplica{}, nil },
		activityName(replica.DeleteReplicaName))

	env.OnActivity(replica.ObserveReplicasName, mock.Anything, mock.Anything).Return(func(_ context.Context, in ObserveInput) ([]ReplicaRecord, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		var out []ReplicaRecord
		for _, r := range c.replicas {
			out = append(out, r)
		}
		return out, nil
	})
	env.OnActivity(replica.ObserveReplicaPageName, mock.Anything, mock.Anything).Return(func(_ context.Context, in ObservePageInput) (ObservePage, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.observed++
		if in.List {
			var page ObservePage
			for ref := range c.replicas {
				page.Listed = append(page.Listed, ref)
			}
			return page, nil
		}
		c.maxObserved = max(c.maxObserved, len(in.Refs))
		var out []ReplicaRecord
		for _, ref := range in.Refs {
			if r, ok := c.replicas[ref]; ok {
				out = append(out, r)
			}
		}
		return ObservePage{Replicas: Compact(out)}, nil
	})
	create := func(in SupervisionInput) {
		c.mu.Lock()
		c.creating++
		c.maxCreating = max(c.maxCreating, c.creating)
		c.mu.Unlock()
		time.Sleep(time.Millisecond) // creates in flight at once would show in maxCreating
		c.mu.Lock()
		defer c.mu.Unlock()
		c.creating--
		c.record("create %s gen %d", in.ID.Ref(), in.Generation)
		c.replicas[in.ID.Ref()] = ReplicaRecord{ID: in.ID, Config: in.ReplicaConfig, Generation: in.Generation, State: StateRunning, Digest: c.digest(in.ReplicaConfig)}
	}
	env.OnActivity(replica.StartReplicaName, mock.Anything, mock.Anything).Return(func(_ context.Context, in SupervisionInput) error {
		create(in)
		return nil
	})
	env.OnActivity(replica.StartReplicasName, mock.Anything, mock.Anything).Return(func(_ context.Context, in StartReplicasInput) error {
		c.mu.Lock()
		c.batches = append(c.batches, len(in.Replicas))
		c.mu.Unlock()
		var wg sync.WaitGroup
		for _, r := range in.Replicas {
			wg.Add(1)
			go func() { defer wg.Done(); create(r) }()
		}
		wg.Wait()
		return nil
	})
	env.OnActivity(replica.ReconfigureReplicaName, mock.Anything, mock.Anything).Return(func(_ context.Context, in ReconfigureReplicaInput) (ReconfigureReplicaResult, error) {
		c.mu.Lock()
		ref := in.ID.Ref()
		rec := c.replicas[ref]
		if res, ok := c.updates[ref+" "+in.UpdateID]; ok {
			// Temporal answers an update ID it has seen from its history.
			c.mu.Unlock()
			return res, nil
		}
		if !in.Request.Replace {
			c.record("policy %s gen %d", ref, in.Request.Generation)
			rec.Config.Policy = in.Request.Config.Policy
			c.replicas[ref] = rec
			c.mu.Unlock()
			return ReconfigureReplicaResult{ReconfigureResult: ReconfigureResult{Ready: true}}, nil
		}
		c.record("replace %s gen %d", ref, in.Request.Generation)
		c.down++
		c.maxDown = max(c.maxDown, c.down)
		hold := c.hold
		c.hold = nil
		c.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-time.After(10 * time.Second):
			}
		}
		time.Sleep(20 * time.Millisecond) // overlapping replacements would show in maxDown
		c.mu.Lock()
		defer c.mu.Unlock()
		c.down--
		rec.Config, rec.Generation, rec.State, rec.Digest = in.Request.Config, in.Request.Generation, StateRunning, c.digest(in.Request.Config)
		if c.notReady[ref] {
			rec.State = StateCrashLoopBackOff
		}
		c.replicas[ref] = rec
		res := ReconfigureReplicaResult{ReconfigureResult: ReconfigureResult{Ready: true}}
		if c.notReady[ref] {
			res = ReconfigureReplicaResult{ReconfigureResult: ReconfigureResult{Reason: ref + ": the new container exited within min_ready"}}
		}
		if c.updates == nil {
			c.updates = map[string]ReconfigureReplicaResult{}
		}
		c.updates[ref+" "+in.UpdateID] = res
		return res, nil
	})
	env.OnActivity(replica.UnsuperviseReplicaName, mock.Anything, mock.Anything).Return(func(_ context.Context, in ReplicaRequest) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.record("unsupervise %s", in.ID.Ref())
		delete(c.replicas, in.ID.Ref())
		return nil
	})
	env.OnActivity(replica.ShutdownReplicaName, mock.Anything, mock.Anything).Return(func(_ context.Context, in ReplicaRequest) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.record("shutdown %s", in.ID.Ref())
		return nil
	})
	env.OnActivity(replica.PreflightName, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.PreflightInput) (activities.PreflightResult, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		var res activities.PreflightResult
		for _, r := range in.Replicas {
			c.preflights = append(c.preflights, r.ID.Ref())
			if p, ok := c.problems[r.ID.Ref()]; ok {
				res.Problems = append(res.Problems, activities.PreflightProblem{ID: r.ID, Problem: p})
			}
		}
		if c.noPreflightWorker {
			return res, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)
		}
		if c.oldPreflightWorker {
			return res, temporal.NewApplicationError("unable to find activityType=Preflight", "ActivityNotRegisteredError")
		}
		return res, nil
	})
	env.OnActivity(replica.StopName, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.StopInput) (runtime.Exit, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.record("delete %s remove=%v", in.ID.Ref(), in.Remove)
		if c.noWorker {
			return runtime.Exit{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)
		}
		return runtime.Exit{}, nil
	})
	return env
}

func shopSpec(replicas int, args string, p policy.Policy) DeploymentSpec {
	return DeploymentSpec{Name: "shop", Services: []ServiceSpec{{
		Name: "api", Replicas: replicas,
		Config: ReplicaConfig{Spec: runtime.ContainerSpec{Image: "docker.io/library/busybox:local", Args: []string{args}},
			Policy: p, StopGrace: 2 * time.Second, Node: "node-a"},
		Update: UpdateSettings{}.WithDefaults(),
	}}}
}

// applyAt sends an apply at mock time d and keeps its answer.
func applyAt(env *testsuite.TestWorkflowEnvironment, d time.Duration, spec DeploymentSpec, out *updateResult) {
	env.RegisterDelayedCallback(func() {
		sendUpdate(env, replica.UpdateApply, ApplyRequest{Spec: spec}, out)
	}, d)
}

func rollout(t *testing.T, env *testsuite.TestWorkflowEnvironment) RolloutStatus {
	t.Helper()
	v, err := env.QueryWorkflow(replica.QueryRollout)
	require.NoError(t, err)
	var st RolloutStatus
	require.NoError(t, v.Get(&st))
	return st
}

func planOf(t *testing.T, res *updateResult) ApplyResult {
	t.Helper()
	require.True(t, res.done)
	require.NoError(t, res.rejected)
	require.NoError(t, res.err)
	return res.value.(ApplyResult)
}

func actions(items []PlanItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = fmt.Sprintf("%s %s %v", it.ID, it.Action, it.Fields)
	}
	return out
}

// Scale 2 -> 3 with a new command, then 3 -> 1, then the same file again:
// creates first, replacements one at a time, removals highest-numbered
// first, and an unchanged apply changes nothing.
func TestDeploymentRollsOutScalesAndRemoves(t *testing.T) {
	c := &cluster{}
	env := newDeploymentEnv(t, c)
	first, second, third, fourth := &updateResult{}, &updateResult{}, &updateResult{}, &updateResult{}
	var afterSecond, afterThird RolloutStatus
	applyAt(env, time.Minute, shopSpec(2, "v1", policy.Policy{}), first)
	applyAt(env, 2*time.Minute, shopSpec(3, "v2", policy.Policy{}), second)
	env.RegisterDelayedCallback(func() { afterSecond = rollout(t, env) }, 3*time.Minute-time.Second)
	applyAt(env, 3*time.Minute, shopSpec(1, "v2", policy.Policy{}), third)
	env.RegisterDelayedCallback(func() { afterThird = rollout(t, env) }, 4*time.Minute-time.Second)
	applyAt(env, 4*time.Minute, shopSpec(1, "v2", policy.Policy{}), fourth)
	env.RegisterDelayedCallback(env.CancelWorkflow, 5*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})

	require.Equal(t, []string{"shop/api-rep-1 create []", "shop/api-rep-2 create []"}, actions(planOf(t, first).Plan))
	p2 := planOf(t, second)
	require.Equal(t, 2, p2.Generation)
	require.Equal(t, []string{"shop/api-rep-1 update [args]", "shop/api-rep-2 update [args]", "shop/api-rep-3 create []"}, actions(p2.Plan))
	require.Equal(t, []string{"shop/api-rep-1 unchanged []", "shop/api-rep-3 remove []", "shop/api-rep-2 remove []"}, actions(planOf(t, third).Plan))
	p4 := planOf(t, fourth)
	require.Equal(t, []string{"shop/api-rep-1 unchanged []"}, actions(p4.Plan))
	require.Equal(t, 3, p4.Generation, "an apply that changes nothing keeps the generation")

	sort.Strings(c.log[:2]) // created at once
	require.Equal(t, []string{
		"create shop/api-rep-1 gen 1", "create shop/api-rep-2 gen 1",
		"create shop/api-rep-3 gen 2", "replace shop/api-rep-1 gen 2", "replace shop/api-rep-2 gen 2",
		"unsupervise shop/api-rep-3", "delete shop/api-rep-3 remove=true",
		"unsupervise shop/api-rep-2", "delete shop/api-rep-2 remove=true",
	}, c.log)
	require.Equal(t, 1, c.maxDown, "max_unavailable 1")
	require.Equal(t, RolloutStatus{Deployment: "shop", Generation: 2, State: RolloutComplete, Updated: 3, Total: 3}, afterSecond)
	require.Equal(t, RolloutStatus{Deployment: "shop", Generation: 3, State: RolloutComplete, Updated: 1, Total: 1}, afterThird)
}

// A changed policy only is applied in place; max_unavailable 2 replaces two at once.
func TestDeploymentPolicyInPlaceAndMaxUnavailable(t *testing.T) {
	c := &cluster{}
	env := newDeploymentEnv(t, c)
	first, second, third := &updateResult{}, &updateResult{}, &updateResult{}
	applyAt(env, time.Minute, shopSpec(4, "v1", policy.Policy{}), first)
	applyAt(env, 2*time.Minute, shopSpec(4, "v1", policy.Policy{MaxRestarts: 9}), second)
	wide := shopSpec(4, "v2", policy.Policy{MaxRestarts: 9})
	wide.Services[0].Update.MaxUnavailable = 2
	applyAt(env, 3*time.Minute, wide, third)
	env.RegisterDelayedCallback(env.CancelWorkflow, 4*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})

	require.Equal(t, "shop/api-rep-1 update [on_panic]", actions(planOf(t, second).Plan)[0])
	sort.Strings(c.log[4:8]) // in place, all at once
	require.Equal(t, []string{
		"policy shop/api-rep-1 gen 2", "policy shop/api-rep-2 gen 2", "policy shop/api-rep-3 gen 2", "policy shop/api-rep-4 gen 2",
	}, c.log[4:8])
	require.Len(t, c.log, 12)
	require.Equal(t, 2, c.maxDown)
}

// A replacement that crashes within min_ready pauses the rollout; the other
// replicas keep the old spec; applying the previous file rolls the crashed
// one back and completes.
func TestDeploymentPausesThenRollsBack(t *testing.T) {
	c := &cluster{notReady: map[string]bool{"shop/api-rep-1": true}}
	env := newDeploymentEnv(t, c)
	first, bad, back := &updateResult{}, &updateResult{}, &updateResult{}
	var paused, after RolloutStatus
	applyAt(env, time.Minute, shopSpec(3, "v1", policy.Policy{}), first)
	applyAt(env, 2*time.Minute, shopSpec(3, "crash", policy.Policy{}), bad)
	env.RegisterDelayedCallback(func() {
		paused = rollout(t, env)
		c.mu.Lock()
		c.notReady = nil
		c.mu.Unlock()
	}, 3*time.Minute)
	applyAt(env, 4*time.Minute, shopSpec(3, "v1", policy.Policy{}), back)
	env.RegisterDelayedCallback(func() { after = rollout(t, env) }, 5*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 6*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})

	require.Equal(t, RolloutPaused, paused.State)
	require.Equal(t, 2, paused.Generation)
	require.Equal(t, 1, paused.Updated)
	require.Contains(t, paused.Reason, "shop/api-rep-1: the new container exited within min_ready")
	require.Equal(t, []string{"shop/api-rep-1 update [args]", "shop/api-rep-2 unchanged []", "shop/api-rep-3 unchanged []"}, actions(planOf(t, back).Plan))
	require.Equal(t, RolloutStatus{Deployment: "shop", Generation: 3, State: RolloutComplete, Updated: 3, Total: 3}, after)
	sort.Strings(c.log[:3])
	require.Equal(t, []string{
		"create shop/api-rep-1 gen 1", "create shop/api-rep-2 gen 1", "create shop/api-rep-3 gen 1",
		"replace shop/api-rep-1 gen 2", "replace shop/api-rep-1 gen 3",
	}, c.log)
}

// A replica's shutdown policy shuts the whole service down.
func TestDeploymentShutsDownTheService(t *testing.T) {
	c := &cluster{}
	env := newDeploymentEnv(t, c)
	applyAt(env, time.Minute, shopSpec(3, "v1", policy.Policy{Action: policy.ActionShutdown}), &updateResult{})
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(replica.SignalServiceShutdown, ServiceShutdownSignal{Service: "api", Replica: 2, ExitCode: 7})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 3*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})
	sort.Strings(c.log[3:])
	require.Equal(t, []string{"shutdown shop/api-rep-1", "shutdown shop/api-rep-3"}, c.log[3:])
}

// An apply for another deployment is refused before it reaches history.
func TestDeploymentRefusesAnotherDeploymentsFile(t *testing.T) {
	c := &cluster{}
	env := newDeploymentEnv(t, c)
	res := &updateResult{}
	other := shopSpec(1, "v1", policy.Policy{})
	other.Name = "other"
	applyAt(env, time.Minute, other, res)
	env.RegisterDelayedCallback(env.CancelWorkflow, 2*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})
	require.ErrorContains(t, res.rejected, `the file is for deployment "other"`)
	require.Empty(t, c.log)
}

func workflowName(name string) workflow.RegisterOptions { return workflow.RegisterOptions{Name: name} }
func activityName(name string) activity.RegisterOptions { return activity.RegisterOptions{Name: name} }

// A run continues as new after ContinueAsNewAfter steps, carrying the
// desired spec, the generation and the replicas; the next run goes on.
func TestDeploymentContinuesAsNewWithItsState(t *testing.T) {
	c := &cluster{}
	env := newDeploymentEnv(t, c)
	applyAt(env, time.Minute, shopSpec(2, "v1", policy.Policy{}), &updateResult{})
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop", ContinueAsNewAfter: 2})
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	var next DeploymentInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, 2, next.ContinueAsNewAfter)
	require.NotNil(t, next.Carry)
	require.Equal(t, 1, next.Carry.Generation)
	require.Equal(t, 1, next.Carry.Runs)
	require.Empty(t, next.Carry.Replicas, "carried compactly")
	require.Len(t, next.Carry.Compact.Replicas, 2)
	require.Len(t, next.Carry.Compact.Configs, 1, "one config, carried once")
	require.Equal(t, 2, next.Carry.Desired.Services[0].Replicas)

	// The next run answers from the carried state: the same file is unchanged.
	c2 := &cluster{replicas: map[string]ReplicaRecord{}}
	for _, r := range next.Carry.Compact.Records("shop") {
		c2.replicas[r.ID.Ref()] = r
	}
	env2 := newDeploymentEnv(t, c2)
	res := &updateResult{}
	var st RolloutStatus
	env2.RegisterDelayedCallback(func() { st = rollout(t, env2) }, 30*time.Second)
	applyAt(env2, time.Minute, shopSpec(2, "v1", policy.Policy{}), res)
	env2.RegisterDelayedCallback(env2.CancelWorkflow, 2*time.Minute)
	env2.ExecuteWorkflow(Deployment, next)
	require.Equal(t, RolloutStatus{Deployment: "shop", Generation: 1, State: RolloutComplete, Updated: 2, Total: 2}, st)
	require.Equal(t, []string{"shop/api-rep-1 unchanged []", "shop/api-rep-2 unchanged []"}, actions(planOf(t, res).Plan))
	require.Empty(t, c2.log)
}

// A new apply while a replacement is in flight is answered at once and
// supersedes the rollout: the rest of the replicas go straight to the new spec.
func TestDeploymentNewApplySupersedesTheRollout(t *testing.T) {
	c := &cluster{}
	env := newDeploymentEnv(t, c)
	first, second, third := &updateResult{}, &updateResult{}, &updateResult{}
	var answeredInFlight bool
	applyAt(env, time.Minute, shopSpec(2, "v1", policy.Policy{}), first)
	env.RegisterDelayedCallback(func() {
		c.mu.Lock()
		c.hold = make(chan struct{})
		hold := c.hold
		c.mu.Unlock()
		sendUpdate(env, replica.UpdateApply, ApplyRequest{Spec: shopSpec(2, "v2", policy.Policy{})}, second)
		// While rep-1's replacement is held, apply v3.
		env.RegisterDelayedCallback(func() {
			sendUpdate(env, replica.UpdateApply, ApplyRequest{Spec: shopSpec(2, "v3", policy.Policy{})}, third)
			env.RegisterDelayedCallback(func() {
				answeredInFlight = third.done
				close(hold)
			}, 50*time.Millisecond)
		}, 50*time.Millisecond)
	}, 2*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 3*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})

	require.True(t, answeredInFlight, "the apply was answered while the replacement was in flight")
	require.Equal(t, 3, planOf(t, third).Generation)
	require.Equal(t, []string{"shop/api-rep-1 update [args]", "shop/api-rep-2 update [args]"}, actions(planOf(t, third).Plan))
	require.Equal(t, []string{"replace shop/api-rep-1 gen 2", "replace shop/api-rep-1 gen 3", "replace shop/api-rep-2 gen 3"}, c.log[2:])
}

// Applying the file being rolled out again, mid-rollout, keeps its
// generation and replaces nothing twice.
func TestDeploymentSameFileMidRolloutKeepsTheGeneration(t *testing.T) {
	c := &cluster{}
	env := newDeploymentEnv(t, c)
	first, second, again := &updateResult{}, &updateResult{}, &updateResult{}
	applyAt(env, time.Minute, shopSpec(2, "v1", policy.Policy{}), first)
	env.RegisterDelayedCallback(func() {
		c.mu.Lock()
		c.hold = make(chan struct{})
		hold := c.hold
		c.mu.Unlock()
		sendUpdate(env, replica.UpdateApply, ApplyRequest{Spec: shopSpec(2, "v2", policy.Policy{})}, second)
		env.RegisterDelayedCallback(func() {
			sendUpdate(env, replica.UpdateApply, ApplyRequest{Spec: shopSpec(2, "v2", policy.Policy{})}, again)
			env.RegisterDelayedCallback(func() { close(hold) }, 50*time.Millisecond)
		}, 50*time.Millisecond)
	}, 2*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 3*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})
	require.Equal(t, 2, planOf(t, again).Generation)
	require.Equal(t, []string{"replace shop/api-rep-1 gen 2", "replace shop/api-rep-2 gen 2"}, c.log[2:])
}

// runningShop is a cluster running shopSpec(n, args) at generation 1, with
// the given replicas in other states.
func runningShop(n int, args string, states map[int]State) *cluster {
	c := &cluster{replicas: map[string]ReplicaRecord{}}
	for r := 1; r <= n; r++ {
		id := replica.ID{Deployment: "shop", Service: "api", Replica: r}
		st := StateRunning
		if s, ok := states[r]; ok {
			st = s
		}
		c.replicas[id.Ref()] = ReplicaRecord{ID: id, Config: shopSpec(n, args, policy.Policy{}).Services[0].Config, Generation: 1, State: st}
	}
	return c
}

// A replica already down is replaced first: the only serving replica of a
// crash-looping service is not taken down beside it.
func TestDeploymentReplacesWhatIsDownFirst(t *testing.T) {
	c := runningShop(2, "v1", map[int]State{2: StateCrashLoopBackOff})
	env := newDeploymentEnv(t, c)
	applyAt(env, time.Minute, shopSpec(2, "v2", policy.Policy{}), &updateResult{})
	env.RegisterDelayedCallback(env.CancelWorkflow, 3*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})
	require.Equal(t, []string{"replace shop/api-rep-2 gen 2", "replace shop/api-rep-1 gen 2"}, c.log, "generation 2: the replicas hold 1")
}

// With a replica down and no budget left, the rollout waits, says why, and
// goes on once the replica is back.
func TestDeploymentWaitsWithNoBudget(t *testing.T) {
	c := runningShop(2, "v1", nil)
	env := newDeploymentEnv(t, c)
	// rep-1 already runs v2 and crash-loops; rep-2 serves v1.
	rep1 := replica.ID{Deployment: "shop", Service: "api", Replica: 1}.Ref()
	rec := c.replicas[rep1]
	rec.Config, rec.State = shopSpec(2, "v2", policy.Policy{}).Services[0].Config, StateCrashLoopBackOff
	c.replicas[rep1] = rec
	var waiting RolloutStatus
	var logWhileDown []string
	applyAt(env, time.Minute, shopSpec(2, "v2", policy.Policy{}), &updateResult{})
	env.RegisterDelayedCallback(func() {
		waiting = rollout(t, env)
		c.mu.Lock()
		defer c.mu.Unlock()
		logWhileDown = append([]string{}, c.log...)
		rec := c.replicas[rep1]
		rec.State = StateRunning
		c.replicas[rep1] = rec
	}, 2*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 3*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})
	require.Empty(t, logWhileDown, "nothing replaced while rep-1 is down")
	require.Equal(t, RolloutProgressing, waiting.State)
	require.Equal(t, "waiting: 1 of 2 replicas of service api are down (shop/api-rep-1: CrashLoopBackOff) and max_unavailable is 1; the next replacement starts when one is back", waiting.Reason)
	require.Equal(t, []string{"replace shop/api-rep-2 gen 2"}, c.log)
}

// A rollback applied while the replacement to the new spec is in flight is
// a new generation planned against what the step leaves: the replaced
// replica is replaced again, and every replica runs the rolled-back spec.
func TestDeploymentRollbackMidReplacement(t *testing.T) {
	c := &cluster{}
	env := newDeploymentEnv(t, c)
	back := &updateResult{}
	var during, back2, after RolloutStatus
	applyAt(env, time.Minute, shopSpec(2, "v1", policy.Policy{}), &updateResult{})
	env.RegisterDelayedCallback(func() {
		c.mu.Lock()
		c.hold = make(chan struct{})
		hold := c.hold
		c.mu.Unlock()
		sendUpdate(env, replica.UpdateApply, ApplyRequest{Spec: shopSpec(2, "v2", policy.Policy{})}, &updateResult{})
		env.RegisterDelayedCallback(func() {
			sendUpdate(env, replica.UpdateApply, ApplyRequest{Spec: shopSpec(2, "v1", policy.Policy{})}, back)
			env.RegisterDelayedCallback(func() {
				during = rollout(t, env)
				// Hold the replacement back to v1 too, and look meanwhile.
				c.mu.Lock()
				c.hold = make(chan struct{})
				again := c.hold
				c.mu.Unlock()
				close(hold)
				env.RegisterDelayedCallback(func() { back2 = rollout(t, env); close(again) }, 100*time.Millisecond)
			}, 50*time.Millisecond)
		}, 50*time.Millisecond)
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() { after = rollout(t, env) }, 3*time.Minute-time.Second)
	env.RegisterDelayedCallback(env.CancelWorkflow, 3*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})

	p := planOf(t, back)
	require.Equal(t, 3, p.Generation, "a rollback is a new generation")
	require.Equal(t, []string{"shop/api-rep-1 update [args]", "shop/api-rep-2 unchanged []"}, actions(p.Plan))
	require.Equal(t, []string{"replace shop/api-rep-1 gen 2", "replace shop/api-rep-1 gen 3"}, c.log[2:])
	for ref, r := range c.replicas {
		require.Equal(t, []string{"v1"}, r.Config.Spec.Args, ref)
	}
	require.Equal(t, RolloutProgressing, during.State, "not complete while rep-1 is brought to v2")
	require.Equal(t, RolloutProgressing, back2.State, "nor while it is brought back")
	require.Equal(t, RolloutStatus{Deployment: "shop", Generation: 3, State: RolloutComplete, Updated: 2, Total: 2}, after)
}

// A deployment workflow made afresh (after a terminate) counts on from the
// highest generation its replicas hold.
func TestDeploymentNewRunCountsFromReplicasGeneration(t *testing.T) {
	old := shopSpec(2, "v1", policy.Policy{})
	c := &cluster{replicas: map[string]ReplicaRecord{}}
	for r := 1; r <= 2; r++ {
		id := replica.ID{Deployment: "shop", Service: "api", Replica: r}
		c.replicas[id.Ref()] = ReplicaRecord{ID: id, Config: old.Services[0].Config.withDefaults(), Generation: 4 + r, State: StateRunning}
	}
	env := newDeploymentEnv(t, c)
	res := &updateResult{}
	applyAt(env, time.Minute, shopSpec(2, "v2", policy.Policy{}), res)
	env.RegisterDelayedCallback(env.CancelWorkflow, 2*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})
	require.Equal(t, 7, planOf(t, res).Generation)
	require.Equal(t, []string{"replace shop/api-rep-1 gen 7", "replace shop/api-rep-2 gen 7"}, c.log)
}

// A failed preflight replaces nothing and pauses the rollout with one short
// line naming the replica, the field and the fix; the next apply goes on.
func TestDeploymentPreflightPausesBeforeAnythingStops(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script func(c *cluster)
		reason string
	}{
		{"a problem", func(c *cluster) {
			c.problems = map[string]runtime.Problem{"shop/api-rep-1": {Field: "volumes[0].source", Reason: "/srv/data does not exist on this node (no such file or directory); create it or fix the path"}}
		}, "generation 2: shop/api-rep-1 not replaced (left as it was): volumes[0].source: /srv/data does not exist on this node (no such file or directory); create it or fix the path; then apply again"},
		{"no worker", func(c *cluster) { c.noPreflightWorker = true },
			"generation 2: shop/api-rep-1 not replaced (left as it was): node: no worker on node node-a took the preflight within 30s; start vigil-worker there or fix the node; then apply again"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := runningShop(2, "v1", nil)
			tc.script(c)
			env := newDeploymentEnv(t, c)
			var paused RolloutStatus
			var logWhilePaused []string
			applyAt(env, time.Minute, shopSpec(2, "v2", policy.Policy{}), &updateResult{})
			env.RegisterDelayedCallback(func() {
				paused = rollout(t, env)
				c.mu.Lock()
				logWhilePaused = append([]string{}, c.log...)
				c.problems, c.noPreflightWorker = nil, false
				c.mu.Unlock()
			}, 2*time.Minute)
			applyAt(env, 3*time.Minute, shopSpec(2, "v2", policy.Policy{}), &updateResult{})
			env.RegisterDelayedCallback(env.CancelWorkflow, 4*time.Minute)
			env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})

			require.Empty(t, logWhilePaused, "nothing stopped or replaced")
			require.Equal(t, RolloutPaused, paused.State)
			require.Equal(t, tc.reason, paused.Reason)
			require.LessOrEqual(t, len(paused.Reason), maxPauseReason)
			require.Equal(t, []string{"replace shop/api-rep-1 gen 3", "replace shop/api-rep-2 gen 3"}, c.log, "the same file applied again resumes")
			require.Equal(t, []string{"shop/api-rep-1", "shop/api-rep-1", "shop/api-rep-2"}, c.preflights)
		})
	}
}

// A pause reason never exceeds its bound, however long the node's reason.
func TestPreflightReasonIsOneShortLine(t *testing.T) {
	r := notReplaced(7, "shop/api-rep-1", "image", strings.Repeat("registry said no\n", 40))
	require.LessOrEqual(t, len(r), maxPauseReason)
	require.NotContains(t, r, "\n")
	require.True(t, strings.HasPrefix(r, "generation 7: shop/api-rep-1 not replaced (left as it was): image: registry said no registry"), r)
}

// Since v0.3.0 an idle deployment continues as new once a day, carrying
// its state.
func TestDeploymentContinuesAsNewDaily(t *testing.T) {
	c := &cluster{}
	env := newDeploymentEnv(t, c)
	start := env.Now()
	applyAt(env, time.Minute, shopSpec(2, "v1", policy.Policy{}), &updateResult{})
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	require.Equal(t, DeploymentContinueEvery, env.Now().Sub(start))
	var next DeploymentInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Equal(t, 1, next.Carry.Generation)
	require.Len(t, next.Carry.Compact.Replicas, 2)
}

// A node whose worker predates the preflight (a mixed fleet during an
// upgrade) does not stop the rollout: it replaces as before.
func TestDeploymentReplacesOnAWorkerWithoutPreflight(t *testing.T) {
	c := runningShop(2, "v1", nil)
	c.oldPreflightWorker = true
	env := newDeploymentEnv(t, c)
	var st RolloutStatus
	applyAt(env, time.Minute, shopSpec(2, "v2", policy.Policy{}), &updateResult{})
	env.RegisterDelayedCallback(func() { st = rollout(t, env) }, 2*time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 3*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})
	require.Equal(t, RolloutComplete, st.State, st.Reason)
	require.Equal(t, []string{"replace shop/api-rep-1 gen 2", "replace shop/api-rep-2 gen 2"}, c.log)
	require.Equal(t, []string{"shop/api-rep-1", "shop/api-rep-2"}, c.preflights, "tried once each, not retried")
}

// Since v0.3.0 a create step starts its replicas in StartReplicas batches,
// bounded by count and by the size of their inputs; a v0.2.0 run keeps one
// StartReplica activity per replica.
func TestDeploymentCreatesInBatches(t *testing.T) {
	big := strings.Repeat("x", 10<<10)
	for _, tc := range []struct {
		name    string
		release workflow.Version // DefaultVersion: a v0.2.0 run
		args    string
		batches []int
	}{
		{"v0.3.0", workflow.Version(CurrentRelease), "v1", []int{100, 100, 50}},
		// 24 inputs of 10 KiB and more come to 256 KiB.
		{"v0.3.0 large specs", workflow.Version(CurrentRelease), big, []int{24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 10}},
		{"v0.2.0", workflow.DefaultVersion, "v1", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &cluster{}
			env := newDeploymentEnv(t, c)
			recordVersions(env, tc.release)
			applyAt(env, time.Minute, shopSpec(250, tc.args, policy.Policy{}), &updateResult{})
			env.RegisterDelayedCallback(env.CancelWorkflow, 5*time.Minute)
			env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})

			sort.Ints(c.batches)
			want := append([]int(nil), tc.batches...)
			sort.Ints(want)
			require.Equal(t, want, c.batches)
			require.Len(t, c.log, 250, "every replica created once")
			require.Len(t, c.replicas, 250)
			st := rollout(t, env)
			require.Equal(t, RolloutComplete, st.State)
			require.Equal(t, 250, st.Updated)
		})
	}
}
