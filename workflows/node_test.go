package workflows

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/policy"
	"github.com/vigil-run/vigil/replica"
)

// versionRead is one GetVersion a run made: its change ID and what it got.
type versionRead struct {
	ID      string
	Version workflow.Version
}

// recordVersions answers the run's GetVersion of any change ID read as the
// release marker is with marker, and keeps each read: a read is a marker the
// run records. A read with other bounds finds no mock and fails the run.
func recordVersions(env *testsuite.TestWorkflowEnvironment, marker workflow.Version) func() []versionRead {
	var mu sync.Mutex
	var reads []versionRead
	env.OnGetVersion(mock.Anything, workflow.DefaultVersion, workflow.Version(CurrentRelease)).Return(
		func(id string, _, _ workflow.Version) workflow.Version {
			v := marker
			if id != ReleaseMarker {
				v = workflow.DefaultVersion
			}
			mu.Lock()
			defer mu.Unlock()
			reads = append(reads, versionRead{id, v})
			return v
		})
	return func() []versionRead { mu.Lock(); defer mu.Unlock(); return append([]versionRead(nil), reads...) }
}

// deployScaled runs one deployment run that creates two replicas, then
// replaces them, and returns what it did to them and the markers it read.
func deployScaled(t *testing.T, marker workflow.Version) ([]string, []versionRead) {
	c := &cluster{}
	env := newDeploymentEnv(t, c)
	reads := recordVersions(env, marker)
	applyAt(env, time.Minute, shopSpec(2, "v1", policy.Policy{}), &updateResult{})
	applyAt(env, 2*time.Minute, shopSpec(2, "v2", policy.Policy{}), &updateResult{})
	env.RegisterDelayedCallback(env.CancelWorkflow, 3*time.Minute)
	env.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})
	require.True(t, temporal.IsCanceledError(env.GetWorkflowError()), "%v", env.GetWorkflowError())
	sort.Strings(c.log[:2]) // created at once
	return c.log, reads()
}

// watchNode runs one node workflow run of three watches (the second one
// dropped by a claim) and returns the claims the watches carried and the
// markers the run read.
func watchNode(t *testing.T, marker workflow.Version) ([]string, []versionRead) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(NodeWatch, workflowName(replica.NodeWorkflowName))
	env.RegisterActivity(activities.New(nil, activities.Options{}))
	reads := recordVersions(env, marker)
	release := make(chan struct{})
	defer close(release)
	var mu sync.Mutex
	var claims []string
	env.OnActivity(replica.WatchNodeName, mock.Anything, mock.Anything).Return(
		func(ctx context.Context, in activities.WatchNodeInput) error {
			mu.Lock()
			claims = append(claims, in.Claim)
			k := len(claims)
			mu.Unlock()
			switch k {
			case 1:
				return nil // a watch that ran its time
			case 2:
				<-release // until the claim drops it (the test env never cancels a mock)
				return errors.New("test over")
			}
			env.CancelWorkflow()
			return nil
		})
	var poll func()
	poll = func() {
		mu.Lock()
		k := len(claims)
		mu.Unlock()
		if k == 2 {
			env.SignalWorkflow(replica.SignalClaim, Claim{ID: "c1", Worker: "w1"})
			return
		}
		env.RegisterDelayedCallback(poll, time.Millisecond)
	}
	env.RegisterDelayedCallback(poll, time.Millisecond)
	env.ExecuteWorkflow(NodeWatch, NodeInput{Node: "n1"})
	require.True(t, temporal.IsCanceledError(env.GetWorkflowError()), "%v", env.GetWorkflowError())
	mu.Lock()
	defer mu.Unlock()
	return claims[:3], reads()
}

// A new run of the deployment and of the node workflow records one marker,
// the release; a run recorded before the marker existed (v0.2.0) reads no
// other and does the same as before.
func TestDeploymentAndNodeRunsRecordTheirRelease(t *testing.T) {
	for _, w := range []struct {
		name string
		run  func(*testing.T, workflow.Version) ([]string, []versionRead)
		want []string
	}{
		{"deployment", deployScaled, []string{
			"create shop/api-rep-1 gen 1", "create shop/api-rep-2 gen 1",
			"replace shop/api-rep-1 gen 2", "replace shop/api-rep-2 gen 2",
		}},
		{"node", watchNode, []string{"", "", "c1"}}, // the claims the watches carried
	} {
		for run, marker := range map[string]workflow.Version{"new": workflow.Version(CurrentRelease), "v0.2.0": workflow.DefaultVersion} {
			t.Run(w.name+"/"+run, func(t *testing.T) {
				did, reads := w.run(t, marker)
				require.Equal(t, []versionRead{{ReleaseMarker, marker}}, reads)
				require.Equal(t, w.want, did)
			})
		}
	}
}

// The deployment and node workflows came with v0.2.0, without a gate: a run
// of theirs without the release marker is of v0.2.0.
func TestRunWithoutMarkerIsV020(t *testing.T) {
	for _, marker := range []workflow.Version{workflow.DefaultVersion, workflow.Version(CurrentRelease)} {
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestWorkflowEnvironment()
		reads := recordVersions(env, marker)
		env.ExecuteWorkflow(func(ctx workflow.Context) (Release, error) {
			return newDeployer(ctx, DeploymentInput{Name: "shop"}).rel, nil
		})
		var rel Release
		require.NoError(t, env.GetWorkflowResult(&rel))
		want := CurrentRelease
		if marker == workflow.DefaultVersion {
			want = V020
		}
		require.Equal(t, want, rel)
		require.Len(t, reads(), 1)
	}
}

// A run whose release marker names no release this worker knows (v0.2.0
// wrote none) is refused: its workflow task fails, and it does nothing on a
// guess.
func TestRunOfAnUnknownReleaseIsRefused(t *testing.T) {
	c := &cluster{}
	dep := newDeploymentEnv(t, c)
	recordVersions(dep, workflow.Version(V020))
	applyAt(dep, time.Minute, shopSpec(1, "v1", policy.Policy{}), &updateResult{})
	dep.ExecuteWorkflow(Deployment, DeploymentInput{Name: "shop"})

	var suite testsuite.WorkflowTestSuite
	node := suite.NewTestWorkflowEnvironment()
	node.RegisterWorkflowWithOptions(NodeWatch, workflowName(replica.NodeWorkflowName))
	node.RegisterActivity(activities.New(nil, activities.Options{}))
	recordVersions(node, workflow.Version(V020))
	watched := false
	node.OnActivity(replica.WatchNodeName, mock.Anything, mock.Anything).Return(
		func(context.Context, activities.WatchNodeInput) error { watched = true; return nil })
	node.ExecuteWorkflow(NodeWatch, NodeInput{Node: "n1"})

	for _, env := range []*testsuite.TestWorkflowEnvironment{dep, node} {
		var panicked *temporal.PanicError
		require.ErrorAs(t, env.GetWorkflowError(), &panicked)
		require.Contains(t, panicked.Error(), "does not know")
	}
	require.Empty(t, c.log)
	require.False(t, watched)
}
