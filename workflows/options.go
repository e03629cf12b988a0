package workflows

import (
	"errors"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/vigil-run/vigil/replica"
)

// Activity options. Every container activity goes to the node's task queue,
// because containerd is host-local; the workflow itself can run anywhere.
// WatchOptions, StartOptions and ControlOptions are exported so that the
// chaos and bench harnesses read the timeouts instead of copying them.

// NodeScheduleToStart bounds how long a node activity waits for a worker on
// its node to take it (runs since v0.3.0; the one home of that default). Its
// expiry is the outcome "no worker on node N" (isNoWorker): the replica
// shows it (NodeNoWorker) and goes on, instead of waiting without end on a
// queue no worker polls (a dead node, a node: typo).
const NodeScheduleToStart = 30 * time.Second

// nodeOptions applies o, a node activity's options, to ctx. A run before
// v0.3.0 waits for a worker without bound, as it did.
func (s *supervisor) nodeOptions(ctx workflow.Context, o workflow.ActivityOptions) workflow.Context {
	if s.rel < V030 {
		o.ScheduleToStartTimeout = 0
	}
	return workflow.WithActivityOptions(ctx, o)
}

// isNoWorker reports whether err is a node activity's schedule-to-start
// expiry: no worker on the node took it.
func isNoWorker(err error) bool {
	var timeout *temporal.TimeoutError
	return errors.As(err, &timeout) && timeout.TimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START
}

// watchOptions: a WaitForExit watch may last for days without adding to
// history. A dead worker stops heartbeating, the attempt times out after
// watchHeartbeat and is retried (unlimited attempts, which history does not
// record) on whichever worker polls the node queue next. The first retry comes soon:
// after a worker loss every moment of it delays the restart of a container
// that crashed meanwhile.
func (s *supervisor) watchOptions(ctx workflow.Context) workflow.Context {
	return s.nodeOptions(ctx, WatchOptions(s.in))
}

// WatchOptions are the options of the WaitForExit activity (see watchOptions).
func WatchOptions(in SupervisionInput) workflow.ActivityOptions {
	o := nodeActivity(in, 24*time.Hour, retryDoubling(200*time.Millisecond, 5*time.Second))
	o.HeartbeatTimeout = watchHeartbeat
	o.Summary = "watch " + in.ID.Ref()
	return o
}

// nodeActivity are the options every activity on in's node shares: its
// node's queue, NodeScheduleToStart to find a worker there, and the given
// run time and retries.
func nodeActivity(in SupervisionInput, startToClose time.Duration, retry *temporal.RetryPolicy) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		TaskQueue:              replica.NodeTaskQueue(in.Node),
		ScheduleToStartTimeout: NodeScheduleToStart,
		StartToCloseTimeout:    startToClose,
		RetryPolicy:            retry,
	}
}

// startOptions: a few quick retries inside the activity; the workflow's own
// retry loop (with durable, growing delays) takes over after them.
// why is the activity's summary ("": "start <replica>").
func (s *supervisor) startOptions(ctx workflow.Context, why string) workflow.Context {
	o := StartOptions(s.in)
	if why != "" {
		o.Summary = why
	}
	return s.nodeOptions(ctx, o)
}

// StartOptions are the options of the EnsureRunning activity (see startOptions).
func StartOptions(in SupervisionInput) workflow.ActivityOptions {
	retry := retryDoubling(time.Second, 10*time.Second)
	retry.MaximumAttempts = 3
	retry.NonRetryableErrorTypes = []string{replica.ErrTypeImageNotFound, replica.ErrTypeBadSpec}
	o := nodeActivity(in, 5*time.Minute, retry)
	o.HeartbeatTimeout = 30 * time.Second
	o.Summary = "start " + in.ID.Ref()
	return o
}

// controlOptions: stop and isolate; stop waits out the grace period before SIGKILL.
// why is the activity's summary ("": none).
func (s *supervisor) controlOptions(ctx workflow.Context, why string) workflow.Context {
	o := ControlOptions(s.in)
	o.Summary = why
	return s.nodeOptions(ctx, o)
}

// ControlOptions are the options of the Stop and Isolate activities (see
// controlOptions); in.StopGrace must be set (the workflow sets its default).
func ControlOptions(in SupervisionInput) workflow.ActivityOptions {
	retry := retryDoubling(time.Second, 10*time.Second)
	retry.MaximumAttempts = 5
	return nodeActivity(in, in.StopGrace+time.Minute, retry)
}

// unsuperviseStopOptions: unsupervise --stop ends supervision promptly even
// when no worker serves the node (the stop then never starts) or the node's
// containerd does not answer.
func (s *supervisor) unsuperviseStopOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:              replica.NodeTaskQueue(s.in.Node),
		ScheduleToStartTimeout: unsuperviseStopWait,
		StartToCloseTimeout:    s.in.StopGrace + 30*time.Second,
		RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 1},
		Summary:                "stop and remove the container: unsupervise --stop",
	})
}

// DeadlockDetectionTimeout is how long a workflow task may run without
// yielding before the SDK calls it a deadlock and fails the task (the SDK's
// default is 1 s). A step of a 10,000-replica deployment plans every
// replica a few times: 250-500 ms of CPU on a 2-core test host at load 7,
// over 1 s at load 20. 5 s leaves that room and stays under Temporal's
// 10 s workflow task timeout, past which the server retries the task anyway.
const DeadlockDetectionTimeout = 5 * time.Second
