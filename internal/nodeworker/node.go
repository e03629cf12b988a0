// Package nodeworker is a Vigil worker's wiring, shared by vigil-worker and
// the scale harness's simulated nodes (tools/simnode): the registration of
// workflows and activities, a node's identity, its claim and the activity
// worker that serves its queue.
package nodeworker

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap"

	"github.com/vigil-run/vigil/activities"
	"github.com/vigil-run/vigil/control"
	"github.com/vigil-run/vigil/internal/humanjson"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
	"github.com/vigil-run/vigil/workflows"
)

// StopTimeout is how long running activities get to finish on shutdown.
// WaitForExit is cancelled and simply resumes on the next worker.
const StopTimeout = 10 * time.Second

// Worker tuning, measured with `make bench` (see README, Benchmark results).
const (
	TaskPollers       = 8
	heartbeatThrottle = 5 * time.Second
)

// RegisterWorkflows registers the workflows under the names clients use.
func RegisterWorkflows(w worker.WorkflowRegistry) {
	w.RegisterWorkflowWithOptions(workflows.Supervise, workflow.RegisterOptions{Name: replica.SupervisorWorkflowName})
	w.RegisterWorkflowWithOptions(workflows.Deployment, workflow.RegisterOptions{Name: replica.DeploymentWorkflowName})
	w.RegisterWorkflowWithOptions(workflows.NodeWatch, workflow.RegisterOptions{Name: replica.NodeWorkflowName})
	w.RegisterWorkflowWithOptions(workflows.FetchLogs, workflow.RegisterOptions{Name: replica.FetchLogsWorkflowName})
}

// RegisterActivities registers each container activity under its constant
// name, so renaming a method cannot silently change the wire name.
func RegisterActivities(w worker.ActivityRegistry, a *activities.Activities) {
	for name, fn := range map[string]any{
		replica.EnsureRunningName: a.EnsureRunning,
		replica.WaitForExitName:   a.WaitForExit,
		replica.StopName:          a.Stop,
		replica.IsolateName:       a.Isolate,
		replica.LogsName:          a.Logs,
		replica.WatchNodeName:     a.WatchNode,
		replica.OrphansName:       a.Orphans,
		replica.PreflightName:     a.Preflight,
	} {
		w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// workflowWorkerOptions are NewWorkflowWorker's options.
func workflowWorkerOptions(onFatal func(error)) worker.Options {
	return worker.Options{
		WorkerStopTimeout:                StopTimeout,
		OnFatalError:                     onFatal,
		MaxConcurrentWorkflowTaskPollers: TaskPollers,
		// A large deployment's task can take over the SDK's 1 s default.
		DeadlockDetectionTimeout: workflows.DeadlockDetectionTimeout,
	}
}

// NewWorkflowWorker is the worker of the shared workflow queue: the
// workflows and the deployment workflow's control activities (they need
// only Temporal, so every worker runs them on the workflow queue).
func NewWorkflowWorker(c client.Client, queue string, onFatal func(error)) worker.Worker {
	// More pollers than the SDK's two drain a crash storm's workflow tasks
	// sooner (bench: 100-container storm 32.1 -> 26.9 s, never worse in four pairs).
	wf := worker.New(c, queue, workflowWorkerOptions(onFatal))
	RegisterWorkflows(wf)
	control.New(c).Register(wf)
	return wf
}

// Node is what serving one node's queue needs.
type Node struct {
	Client client.Client
	// DataConverter is the one Client was dialed with (config.Connection's):
	// it reads the replicas' memos. Nil: plain humanjson.
	DataConverter converter.DataConverter
	Namespace     string
	WorkflowQueue string // the shared queue, where the node's workflow runs
	Name          string // the node's name; its queue is replica.NodeTaskQueue(Name)
	Identity      Identity
	// Claimant is who claims the node; its NodeID and Instance are set
	// from Identity.
	Claimant control.Claimant
	Runtime  runtime.Runtime
	// Activities are the activities' options; the claim's and the
	// server's (Instance, ReportHealth, Reporter, Roster, Renew,
	// OnWatchEnded) are set here.
	Activities    activities.Options
	MaxActivities int
	Pollers       int // activity task pollers (default TaskPollers)
	OnFatal       func(error)
	Log           *zap.Logger
}

// Start claims the node, then polls its queue: a worker refused (another
// host holds the node name; *control.ClaimRefused) never runs its tasks.
// It keeps the node claimed until ctx ends; stop stops the activity worker.
func (n Node) Start(ctx context.Context) (stop func(), err error) {
	queue := replica.NodeTaskQueue(n.Name)
	lost := make(chan struct{}, 1)
	gate := &Gate{node: n.Name}
	pollers := n.Pollers
	if pollers == 0 {
		pollers = TaskPollers
	}
	aw := worker.New(n.Client, queue, worker.Options{
		WorkerStopTimeout:                  StopTimeout,
		OnFatalError:                       n.OnFatal,
		MaxConcurrentActivityExecutionSize: n.MaxActivities,
		MaxConcurrentActivityTaskPollers:   pollers,
		// The SDK would send a watch's heartbeat only every 8 s of its 10 s
		// timeout; a server slowed by a storm then times out healthy watches.
		// Every 5 s leaves 5 s of slack.
		MaxHeartbeatThrottleInterval: heartbeatThrottle,
		Interceptors:                 []interceptor.WorkerInterceptor{gate},
	})
	opts := n.Activities
	opts.Instance = n.Identity.Instance
	opts.ReportHealth = HealthReporter(n.Client)
	opts.Reporter = control.ExitReporter(n.Client, n.Namespace)
	dc := n.DataConverter
	if dc == nil {
		dc = humanjson.DataConverter()
	}
	opts.Roster = control.Roster(n.Client, dc)
	opts.Renew = n.Client.RecordActivityHeartbeat
	opts.OnWatchEnded = func() {
		select {
		case lost <- struct{}{}:
		default:
		}
	}
	RegisterActivities(aw, activities.New(n.Runtime, opts))
	me := n.Claimant
	me.NodeID, me.Instance = n.Identity.NodeID, n.Identity.Instance
	if me.Replaces == "" {
		me.Replaces = n.Identity.Replaces
	}
	claims := &claims{c: n.Client, namespace: n.Namespace, queue: n.WorkflowQueue, node: n.Name, me: me,
		rebooted: n.Identity.Rebooted, gate: gate, log: n.Log}
	if err := claims.claim(ctx); err != nil {
		return nil, err
	}
	if err := n.Identity.Record(); err != nil {
		n.Log.Warn("cannot record this worker instance in the state dir; a restart waits for the node to be free", zap.Error(err))
	}
	if err := aw.Start(); err != nil {
		return nil, fmt.Errorf("cannot start the activity worker on task queue %s: %w", queue, err)
	}
	go claims.keep(ctx, lost, n.OnFatal)
	return aw.Stop, nil
}

// HealthReporter signals a replica's workflow when its container's health
// changes (only then: a healthy container adds no history).
func HealthReporter(c client.Client) func(context.Context, replica.ID, runtime.HealthStatus, string, time.Time) error {
	return func(ctx context.Context, id replica.ID, status runtime.HealthStatus, detail string, startedAt time.Time) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return c.SignalWorkflow(ctx, id.WorkflowID(), "", replica.SignalHealth,
			workflows.HealthReport{Status: status, Detail: detail, StartedAt: startedAt})
	}
}

// claims claims a worker's node for it and keeps it claimed.
type claims struct {
	c                      client.Client
	namespace, queue, node string
	me                     control.Claimant
	rebooted               string // see Identity.Rebooted
	gate                   *Gate
	log                    *zap.Logger
}

// rebootWait bounds the wait for this host's instance from before a reboot
// to go silent: its watch's last heartbeat ages past NodeClaimLiveFor. A
// cloned VM's original stays alive, and the clone is refused after it.
const rebootWait = workflows.NodeClaimLiveFor + workflows.NodeLiveHeartbeat + 10*time.Second

// claim claims the node, retrying until the server answers: the node's
// watch then moves to this worker at once (a worker that ran here before
// may be dead, and its watch would otherwise be retried only after its
// heartbeat timed out). A refusal (*control.ClaimRefused) is final.
func (n *claims) claim(ctx context.Context) error {
	began := time.Now()
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		cl, err := control.ClaimNode(ctx, n.c, n.namespace, n.queue, n.node, n.me)
		var refused *control.ClaimRefused
		switch {
		case err == nil:
			n.gate.owner.Store(true)
			n.log.Info("node claimed: this worker watches its containers", zap.String("node", n.node), zap.String("claim", cl.ID),
				zap.String("node_id", n.me.NodeID), zap.String("instance", n.me.Instance))
			return nil
		case errors.As(err, &refused):
			if !n.heldBeforeReboot(ctx) || time.Since(began) > rebootWait {
				return err
			}
			n.log.Info("the node is held by this host's worker from before a reboot; waiting for it to go silent",
				zap.String("node", n.node), zap.String("instance", n.rebooted))
			delay = 5 * time.Second
		}
		n.log.Warn("cannot claim the node yet; retrying", zap.String("node", n.node), zap.Error(err), zap.Duration("retry_in", delay))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// keep claims the node again whenever a watch of this worker ended and the
// node's workflow is no longer running (e.g. it was terminated): the node
// must never be left without a watch. A node claimed by another worker
// since is not this worker's any more: it stops (onFatal).
func (n *claims) keep(ctx context.Context, lost <-chan struct{}, onFatal func(error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-lost:
		}
		// A watch also ends when a claim replaces it or its hour is up; then
		// the workflow runs on and starts the next one.
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
		desc, err := n.c.DescribeWorkflowExecution(ctx, replica.NodeWorkflowID(n.node), "")
		if err == nil && desc.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			if view, err := n.view(ctx); err == nil && view.LastClaim != nil &&
				view.LastClaim.Instance != "" && view.LastClaim.Instance != n.me.Instance {
				n.gate.owner.Store(false)
				onFatal(&control.ClaimRefused{Reason: fmt.Sprintf("node %s was claimed by host %s (node identity %s); this worker no longer serves it",
					n.node, view.LastClaim.Host, view.LastClaim.NodeID)})
				return
			}
			continue
		}
		n.log.Warn("the node's watch workflow is gone; claiming the node again", zap.String("node", n.node), zap.Error(err))
		if err := n.claim(ctx); err != nil && ctx.Err() == nil {
			onFatal(err)
			return
		}
	}
}

// heldBeforeReboot reports whether the node's claimant is the instance this
// state dir recorded during an earlier boot.
func (n *claims) heldBeforeReboot(ctx context.Context) bool {
	if n.rebooted == "" {
		return false
	}
	view, err := n.view(ctx)
	return err == nil && view.LastClaim != nil && view.LastClaim.Instance == n.rebooted
}

// view is the node's view, asked a few times: a query can fail while the
// node workflow's task is retried.
func (n *claims) view(ctx context.Context) (workflows.NodeView, error) {
	var err error
	for range 5 {
		var view workflows.NodeView
		if view, err = control.NodeView(ctx, n.c, n.node); err == nil {
			return view, nil
		}
		select {
		case <-ctx.Done():
			return view, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	n.log.Warn("cannot read the node's claim", zap.String("node", n.node), zap.Error(err))
	return workflows.NodeView{}, err
}
