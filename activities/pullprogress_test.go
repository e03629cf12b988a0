package activities_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/runtime/runtimetest"
)

// pullingRuntime's Create takes a while, pulling; it reports its progress.
type pullingRuntime struct {
	*runtimetest.Fake
}

func (r pullingRuntime) Create(ctx context.Context, id replica.ID, spec runtime.ContainerSpec) error {
	time.Sleep(300 * time.Millisecond)
	return r.Fake.Create(ctx, id, spec)
}

func (pullingRuntime) PullProgress(image string) (int64, bool) { return 4096, true }

// While a start pulls, its heartbeat says how far the pull got (vigil
// status shows it).
func TestEnsureRunningHeartbeatsPullProgress(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(activities.New(pullingRuntime{runtimetest.New()}, activities.Options{HeartbeatInterval: 20 * time.Millisecond}))
	var mu sync.Mutex
	var seen []activities.StartProgress
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var p activities.StartProgress
		if err := details.Get(&p); err != nil {
			t.Errorf("heartbeat details: %v", err)
		}
		mu.Lock()
		seen = append(seen, p)
		mu.Unlock()
	})
	if _, err := env.ExecuteActivity(replica.EnsureRunningName, activities.EnsureRunningInput{ID: web, Spec: busybox}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 || seen[0] != (activities.StartProgress{Doing: "pulling", PullImage: busybox.Image, PullBytes: 4096}) {
		t.Fatalf("heartbeats %+v, want the pull's progress", seen)
	}
}
