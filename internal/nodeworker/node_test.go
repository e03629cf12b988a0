package nodeworker

import (
	"testing"

	"github.com/vigil-run/vigil/workflows"
)

// A real worker gives a large deployment's workflow task the time the
// 10,000-replica test gives it, not the SDK's 1 s.
func TestWorkflowWorkerAllowsLongTasks(t *testing.T) {
	if got := workflowWorkerOptions(nil).DeadlockDetectionTimeout; got != workflows.DeadlockDetectionTimeout {
		t.Fatalf("DeadlockDetectionTimeout = %v, want %v", got, workflows.DeadlockDetectionTimeout)
	}
}
