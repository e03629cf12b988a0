package workflows

import (
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TestReplayRecordedHistory replays a history recorded from a real run (a
// crash loop with restarts, a backoff, a delayed start and an unsupervise
// update) against today's code, so a change that breaks determinism fails CI.
// Record it again with:
//
//	VIGIL_RECORD_HISTORY=$PWD/workflows/testdata/crashloop_history.json \
//	  go test ./e2e -run TestCrashLoopEndToEnd
func TestReplayRecordedHistory(t *testing.T) {
	replayer := worker.NewWorkflowReplayer()
	replayer.RegisterWorkflowWithOptions(Supervise, workflow.RegisterOptions{Name: SupervisorWorkflowName})
	if err := replayer.ReplayWorkflowHistoryFromJSONFile(nil, "testdata/crashloop_history.json"); err != nil {
		t.Fatalf("replay: %v", err)
	}
}
