package control

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-run/vigil/replica"
)

// The node's watch is the running one: an older claim's attempt, whose
// cancellation is requested, is listed beside it (first, even) and is not it.
func TestCurrentWatchIsTheLiveOne(t *testing.T) {
	now := time.Now()
	watch := func(state enumspb.PendingActivityState, worker string, hb time.Time) *workflowpb.PendingActivityInfo {
		return &workflowpb.PendingActivityInfo{
			ActivityType:       &commonpb.ActivityType{Name: replica.WatchNodeName},
			State:              state,
			LastWorkerIdentity: worker,
			LastStartedTime:    timestamppb.New(hb.Add(-time.Minute)),
			LastHeartbeatTime:  timestamppb.New(hb),
		}
	}
	desc := &workflowservice.DescribeWorkflowExecutionResponse{PendingActivities: []*workflowpb.PendingActivityInfo{
		watch(enumspb.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED, "old", now.Add(-2*time.Minute)),
		watch(enumspb.PENDING_ACTIVITY_STATE_STARTED, "new", now.Add(-5*time.Second)),
	}}
	w, ok := CurrentWatch(desc)
	require.True(t, ok)
	require.Equal(t, "new", w.Worker)
	require.WithinDuration(t, now.Add(-5*time.Second), w.Seen, time.Millisecond)

	desc.PendingActivities = desc.PendingActivities[:1]
	_, ok = CurrentWatch(desc)
	require.False(t, ok, "a watch being cancelled is no node's watch")
}
